"""Per-queue isolation of the syncer: prefetch, deadlines and dead-letter bookkeeping.

- :func:`queue_prefetch`: handlers of one queue in flight per replica (its channel's
  prefetch; acks come after the work).
- :func:`queue_db_connections`: main-pool connections one queue's handlers hold at once
  (``shared.db.connection_share``), half the pool by default, so one queue whose
  transactions are slow never holds every connection.
- :func:`queue_deadline_s`: how long one handler may run before it is cancelled and
  retried (``shared.consumer.HandlerDeadlineError``).
- :func:`dead_letter_hooks`: what is recorded before a message goes to ``<queue>.dead``,
  so that nothing dead-lettered leaves a run or a request looking ``running``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.syncer.consumers.packages import fail_refresh
from services.syncer.consumers.packages_bulk import on_chunk_dead_letter
from services.syncer.deps import SyncerDeps
from services.syncer.repcard.pull import on_repcard_chunk_dead_letter
from shared import queues
from shared.clients.hubspot import MAX_BATCH_INPUTS
from shared.consumer import DeadLetterHook, Delivery
from shared.events import CloudEvent
from shared.jobs import JOB_QUEUES
from shared.runs import fail_dead_run
from shared.settings import SyncerSettings
from shared.topology import QueueSpec

DepsDeadLetterHook = Callable[[CloudEvent, Delivery, str, SyncerDeps], Awaitable[None]]


async def _fail_job_run(
    event: CloudEvent, delivery: Delivery, error: str, deps: SyncerDeps
) -> None:
    await fail_dead_run(
        deps.pool, event, f"dead-lettered after attempt {delivery.attempt}: {error}"
    )


async def _fail_refresh(
    event: CloudEvent, delivery: Delivery, error: str, deps: SyncerDeps
) -> None:
    await fail_refresh(deps.pool, event.id, error)


def dead_letter_hooks() -> dict[str, DepsDeadLetterHook]:
    """What is recorded, by queue name, before a message goes to ``<queue>.dead``: a job
    run ends ``failed``, a bulk run counts its chunk, a refresh request ends ``failed``."""
    hooks: dict[str, DepsDeadLetterHook] = {
        spec.name: _fail_job_run for spec in JOB_QUEUES.values()
    }
    hooks[queues.PACKAGES_CHUNKS.name] = on_chunk_dead_letter
    hooks[queues.PACKAGES_REFRESHES.name] = _fail_refresh
    hooks[queues.REPCARD_CHUNKS.name] = on_repcard_chunk_dead_letter
    return hooks


def queue_prefetch(settings: SyncerSettings, spec: QueueSpec) -> int:
    """Handlers of ``spec`` in flight per replica (its channel's prefetch):
    ``CRMSYNC_QUEUE_PREFETCH`` names it, else ``CRMSYNC_PREFETCH_COUNT``. HubSpot
    contact pushes take at least 100 (a full batch call); they hold no connection while
    they wait for their batch."""
    named = settings.queue_prefetch.get(spec.name)
    if named is not None:
        return named
    if spec.name == queues.HUBSPOT_CONTACTS.name:
        return max(settings.hubspot_push_prefetch, MAX_BATCH_INPUTS)
    if spec.name == queues.REPCARD_CHUNKS.name:
        # Each chunk waits on the RepCard budget: few in flight keep them within deadline.
        return settings.repcard_prefetch
    return settings.prefetch_count


def queue_db_connections(settings: SyncerSettings) -> int:
    """Main-pool connections the handlers of one queue may hold at once
    (``CRMSYNC_QUEUE_DB_CONNECTIONS``, by default half of ``CRMSYNC_DB_POOL_MAX_SIZE``
    rounded up: 5 of 10): however slow one queue's transactions, the others keep the
    rest."""
    if settings.queue_db_connections is not None:
        return min(settings.queue_db_connections, settings.db_pool_max_size)
    return max(1, (settings.db_pool_max_size + 1) // 2)


def queue_deadline_s(settings: SyncerSettings, spec: QueueSpec) -> float:
    """How long one handler of ``spec`` may run: ``CRMSYNC_QUEUE_DEADLINES_S`` names it,
    or ``CRMSYNC_JOB_DEADLINE_S`` for job queues, ``CRMSYNC_HANDLER_DEADLINE_S`` else."""
    named = settings.queue_deadlines_s.get(spec.name)
    if named is not None:
        return named
    if spec.name in {q.name for q in JOB_QUEUES.values()}:
        return settings.job_deadline_s
    return settings.handler_deadline_s


def check_queue_names(settings: SyncerSettings, plan: list[tuple[QueueSpec, Any, int]]) -> None:
    """Refuse per-queue settings that name no queue (a typo would silently do nothing).

    Raises:
        ValueError: naming the unknown queues and the known ones.
    """
    known = {spec.name for spec, _, _ in plan}
    unknown = (set(settings.queue_prefetch) | set(settings.queue_deadlines_s)) - known
    if unknown:
        raise ValueError(
            f"CRMSYNC_QUEUE_PREFETCH / CRMSYNC_QUEUE_DEADLINES_S name unknown queues "
            f"{sorted(unknown)}; known: {sorted(known)}"
        )


def bind_hook(hook: DepsDeadLetterHook | None, deps: SyncerDeps) -> DeadLetterHook | None:
    """``hook`` with its dependencies filled in, as the consumer wrapper calls it."""
    if hook is None:
        return None

    async def run(event: CloudEvent, delivery: Delivery, error: str) -> None:
        await hook(event, delivery, error, deps)

    return run
