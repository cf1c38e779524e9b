"""A job run's row (``job_runs``), as the syncer's job handlers move it along.

::

    scheduled ──start_run──▶ running ──finish_run──▶ succeeded | failed
        └──(the scheduler, for a tick past its grace window)──▶ missed

The row is the single place to look: status, attempts, start and end times, the
totals the handler counted and the last error. A run whose event is dead-lettered
(invalid parameters, or every attempt failed) ends ``failed`` with the reason
(:func:`fail_dead_run`, the job queues' dead-letter hook), never stays ``running``.
Every function takes a pool or a connection from :func:`shared.db.create_pool` (jsonb
as Python objects), so a handler can finish its run in the same transaction as its
work: then a redelivered event finds the run finished exactly when the work is
committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias, TypeVar

import asyncpg
import structlog
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from shared.errors import InvalidEventError
from shared.events import CloudEvent, describe_validation_error
from shared.jobs import JobEvent

log = structlog.get_logger(__name__)

P = TypeVar("P", bound=BaseModel)

RUN_STATUSES = ("scheduled", "running", "succeeded", "failed", "missed")
FINISHED_STATUSES = ("succeeded", "failed", "missed")

JOB_RUNS_FINISHED = Counter(
    "crmsync_job_runs_finished_total",
    "Job runs a handler finished, by job and status (succeeded, failed).",
    ["job", "status"],
)

# A pool, or a connection (inside the caller's transaction).
Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection"


async def start_run(db: Db, run_id: int) -> bool:
    """Mark the run ``running`` and count the attempt; False if it is finished.

    Idempotent: a ``running`` run (its handler died, the event came back) is started
    again, a ``succeeded`` / ``failed`` / ``missed`` or unknown one is not, so a
    redelivered event does nothing.
    """
    started = await db.fetchval(
        """
        UPDATE job_runs SET status = 'running', attempts = attempts + 1,
               started_at = coalesce(started_at, now())
        WHERE id = $1 AND status IN ('scheduled', 'running') RETURNING true
        """,
        run_id,
    )
    return bool(started)


async def finish_run(
    db: Db,
    run_id: int,
    status: Literal["succeeded", "failed"],
    totals: Mapping[str, object] | None = None,
    error: str | None = None,
) -> bool:
    """End the run with ``status``; False if it had already ended.

    Args:
        totals: counters merged into the row's totals (these keys win).
        error: why it failed (kept to 2,000 characters); cleared on success.
    """
    job = await db.fetchval(
        """
        UPDATE job_runs SET status = $2, finished_at = now(),
               started_at = coalesce(started_at, now()),
               totals = totals || $3::jsonb, error = $4
        WHERE id = $1 AND status IN ('scheduled', 'running') RETURNING job
        """,
        run_id,
        status,
        dict(totals or {}),
        error[:2000] if error else None,
    )
    if job is None:
        return False
    JOB_RUNS_FINISHED.labels(job, status).inc()
    return True


async def record_run_error(db: Db, run_id: int, error: str) -> None:
    """Note a failed attempt that will be retried; the run stays ``running``."""
    await db.execute(
        "UPDATE job_runs SET error = $2 WHERE id = $1 AND status = 'running'",
        run_id,
        error[:2000],
    )


async def add_totals(db: Db, run_id: int, counters: Mapping[str, int | float]) -> None:
    """Add ``counters`` to the run's totals, key by key (missing keys count from 0).

    Safe from many chunk handlers at once: each UPDATE re-reads the row it waited
    for, so no increment is lost.
    """
    await db.execute(
        """
        UPDATE job_runs r SET totals = r.totals || (
            SELECT coalesce(jsonb_object_agg(
                       d.key, coalesce((r.totals ->> d.key)::numeric, 0) + d.value::numeric),
                   '{}'::jsonb)
            FROM jsonb_each_text($2::jsonb) AS d
        )
        WHERE r.id = $1
        """,
        run_id,
        dict(counters),
    )


def job_params(job: JobEvent, model: type[P]) -> P:
    """The run's parameters as ``model``.

    Raises:
        InvalidEventError: naming each bad field (``params.batchSize: Input should be
            greater than or equal to 1``); permanent, so the event is dead-lettered at
            once and :func:`fail_dead_run` ends the run ``failed`` with this text.
    """
    try:
        return model.model_validate(job.params)
    except ValidationError as exc:
        raise InvalidEventError(
            f"invalid job parameters: {describe_validation_error(exc, prefix='params')}"
        ) from None


async def fail_dead_run(db: Db, event: CloudEvent, error: str) -> None:
    """End the run of a dead-lettered job event ``failed`` with ``error`` (no-op when the
    run had ended already, or when the event names no run)."""
    try:
        job = event.data_as(JobEvent)
    except InvalidEventError:
        log.error("job_run.dead_letter_without_run", error=error)
        return
    if await finish_run(db, job.run_id, "failed", error=error):
        log.error("job_run.failed", run_id=job.run_id, job=job.job, error=error)
