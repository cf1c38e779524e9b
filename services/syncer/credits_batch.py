"""Single-contact credit notifications, batched when the syncer is behind.

Up to ``direct_limit`` notifications in flight on this replica take the
one-statement fast path (``credits_fast.py``) as soon as they arrive; the others wait
for the next **batch** (with the default limit of 0, every notification does; fewer
than ``min_batch`` waiting run as that many single statements at once): one
transaction of five
statements for up to ``max_batch`` notifications, whatever their number (BEGIN;
``credits_bulk.LOCK_SQL``; the claim of every event id; ``credits_bulk.APPLY_SQL``,
with each notification's own reason, time and event id; COMMIT); keys a contact lacks
are learnt as the transactional path learns them. One batch runs at a time and the
next gathers while it does, so the busier the replica, the bigger the batches
and the cheaper each notification: a backlog drains faster instead of slower.

The end state is the fast path's, notification by notification: the claim makes a
redelivery (in the same batch, a later one or on another replica) change nothing, the
per-field version guard keeps the newest balance, each contact whose balance changed
gets its version bumped, an audit row with its notification's event id and reason,
and is marked due for HubSpot. Lock order is the fast path's: every contact of the
batch in id order (``LOCK_SQL``), then the claims (event ids sorted), so a duplicate
delivered at once to another replica's fast path waits instead of deadlocking.

A batch never holds two notifications that share an event id or a contact key
(HubSpot id, student id, email case-insensitively): the later one waits for the next
batch, so notifications for one student still apply one after the other. When
``LOCK_SQL`` finds two of them that reach the same contact by different keys, or a
concurrent transaction creates one of its new contacts first, the batch
is rolled back whole and each of its notifications takes the transactional path
(:data:`RUN_ALONE`). So does every notification of a batch that failed (one
notification's bad data, a database outage): none fails because of another, and each
meets its own fate (and its consumer's retries) alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import structlog

from services.syncer.credits_bulk import apply_changes, lock_contacts
from services.syncer.credits_fast import FastOutcome, apply_fast
from shared.events import CloudEvent
from shared.messages.credits import CreditChange, CreditsNotification

log = structlog.get_logger(__name__)

# The outcome that sends a notification back to the path it would take alone.
RUN_ALONE = FastOutcome(found=False)

CLAIM_SQL = """
INSERT INTO processed_messages (consumer, event_id)
SELECT $1, e FROM unnest($2::text[]) AS e ORDER BY e
ON CONFLICT DO NOTHING RETURNING event_id
"""


class _RollBack(Exception):
    """Leaves the batch's transaction without committing anything."""


@dataclass(eq=False)
class _Item:
    change: CreditChange
    note: CreditsNotification
    event: CloudEvent
    done: asyncio.Future[FastOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def keys(self) -> list[tuple[str, str]]:
        ref = self.change.contact
        keys = [("event", self.event.id)]
        if ref.hubspot_id is not None:
            keys.append(("hubspot", ref.hubspot_id))
        if ref.student_id is not None:
            keys.append(("student", ref.student_id))
        if ref.email is not None:
            keys.append(("email", ref.email.lower()))
        return keys


class CreditBatcher:
    """This replica's fast path for single-contact notifications (module docstring).

    Args:
        pool: the syncer's pool; a batch holds one connection for its five statements.
        consumer: the name claims are recorded under (``syncer.credits``).
        direct_limit: notifications in flight on the one-statement path before the
            next ones wait for a batch.
        max_batch: notifications per batch.
        min_batch: fewer notifications than this run as that many single statements
            at once (a batch of two would cost five statements instead of two).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        consumer: str,
        *,
        direct_limit: int = 0,
        max_batch: int = 64,
        min_batch: int = 4,
    ) -> None:
        self.pool = pool
        self.consumer = consumer
        self.direct_limit = direct_limit
        self.max_batch = max_batch
        self.min_batch = min_batch
        self._direct = 0
        self._pending: list[_Item] = []
        self._running: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched = 0

    async def apply(
        self, change: CreditChange, note: CreditsNotification, event: CloudEvent
    ) -> FastOutcome:
        """Claim ``event`` and apply ``change``, alone or in a batch.

        Returns what :func:`credits_fast.apply_fast` returns; ``found=False``
        (:data:`RUN_ALONE`) sends the caller to the transactional path, as there.
        Raises the database's error when this notification's own statement failed
        (a batch that failed sends each of its notifications to the transactional
        path instead, where each fails or succeeds on its own).
        """
        if self._direct < self.direct_limit and not self._pending:
            self._direct += 1
            try:
                return await apply_fast(self.pool, self.consumer, change, note, event)
            finally:
                self._direct -= 1
        item = _Item(change, note, event)
        self._pending.append(item)
        self._schedule()
        return await item.done

    def _schedule(self) -> None:
        if self._running is not None or not self._pending:
            return
        batch: list[_Item] = []
        rest: list[_Item] = []
        seen: set[tuple[str, str]] = set()
        for item in self._pending:
            keys = item.keys()
            if len(batch) < self.max_batch and seen.isdisjoint(keys):
                batch.append(item)
                seen.update(keys)
            else:
                rest.append(item)
        self._pending = rest
        self._running = asyncio.create_task(self._run(batch))
        self._running.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is not None:
            log.error("credits.batch_crashed", exc_info=task.exception())
        self._schedule()

    async def _run(self, batch: list[_Item]) -> None:
        try:
            if len(batch) < self.min_batch:
                # Too few to pay for a batch's five statements: each its own one, at once.
                results = await asyncio.gather(
                    *(
                        apply_fast(self.pool, self.consumer, i.change, i.note, i.event)
                        for i in batch
                    ),
                    return_exceptions=True,
                )
            else:
                results = list(await self._apply_batch(batch))
        except BaseException as exc:  # every waiter must wake, whatever happened
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for item, result in zip(batch, results, strict=True):
            if item.done.done():
                continue
            if isinstance(result, BaseException):
                item.done.set_exception(result)
            else:
                item.done.set_result(result)

    async def _apply_batch(self, batch: list[_Item]) -> list[FastOutcome]:
        """One transaction for ``batch``: its outcomes in order, or :data:`RUN_ALONE`
        for each when it had to be rolled back."""
        self.batches += 1
        self.batched += len(batch)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # The fast path's lock order: the contacts, then the claims.
                resolved = await lock_contacts(conn, [item.change for item in batch])
                if resolved[0]["collide"]:
                    raise _RollBack
                claimed = {
                    r["event_id"]
                    for r in await conn.fetch(
                        CLAIM_SQL, self.consumer, [item.event.id for item in batch]
                    )
                }
                fresh = [i for i, item in enumerate(batch) if item.event.id in claimed]
                applied = (
                    await apply_changes(
                        conn,
                        [batch[i].change for i in fresh],
                        [batch[i].note.reason for i in fresh],
                        [batch[i].note.occurred_at for i in fresh],
                        [batch[i].event.id for i in fresh],
                        savepoint=False,
                        resolved=[resolved[i] for i in fresh],
                    )
                    if fresh
                    else []
                )
                if applied is None:
                    raise _RollBack
        except _RollBack:
            log.info("credits.batch_run_alone", notifications=len(batch), cause="interacting")
            return [RUN_ALONE] * len(batch)
        except Exception as exc:
            # A lost race (a concurrent duplicate's claim, a contact created meanwhile),
            # one notification's bad data or a database outage: so that no notification
            # fails because of another, each runs alone and meets its own fate.
            log.warning(
                "credits.batch_run_alone",
                notifications=len(batch),
                cause=type(exc).__name__,
                error=str(exc)[:200],
            )
            return [RUN_ALONE] * len(batch)
        changed = {batch[fresh[i]].event.id: contact_id for i, contact_id in applied}
        outcomes = []
        for item in batch:
            if item.event.id not in claimed:
                outcomes.append(FastOutcome(found=True, claimed=False))
            elif item.event.id in changed:
                outcomes.append(
                    FastOutcome(
                        found=True,
                        claimed=True,
                        changed=tuple(sorted(item.change.credits)),
                        contact_id=changed[item.event.id],
                    )
                )
            else:
                outcomes.append(FastOutcome(found=True, claimed=True))
        return outcomes
