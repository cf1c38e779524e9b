"""Exactly once per tick, however many replicas run.

Every replica computes the same due ticks and tries to insert a ``job_runs`` row for
each, ``ON CONFLICT (job, tick) DO NOTHING RETURNING id``; only the replica whose row
went in writes the job's event to the outbox, in the same transaction. A replica
that dies mid-tick rolls back both, so the tick is still free for the others; one
that comes second finds the row and does nothing. Rows go in sorted by (job, tick),
so replicas inserting the same rows wait for each other instead of deadlocking.

Misfires (after downtime): of the ticks a job missed since its last recorded tick,
the latest runs once if it is still within the job's grace window (``grace_s``);
every other one is recorded as ``missed``, with the reason in ``error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import structlog

from services.scheduler.cron import ticks_between
from services.scheduler.jobs import Job
from services.scheduler.metrics import NEXT_TICK_SECONDS, TICKS
from shared.events import CloudEvent
from shared.jobs import JobEvent, job_event_type, run_event_id
from shared.outbox import enqueue_many

log = structlog.get_logger(__name__)

# Missed ticks recorded per job after one outage at most; older ones are only counted
# in the log (a minutely job down for a week would otherwise write 10,080 rows).
MAX_MISSED_ROWS = 1_000
# Above this many runs in one round, one summary line instead of one per run
# (job_runs has them all).
LOG_EACH_RUN_UP_TO = 20


@dataclass(frozen=True)
class PlannedTick:
    job: str
    tick: datetime
    status: str  # "scheduled" or "missed"
    error: str | None = None


@dataclass
class TickReport:
    """What one round did: the runs this replica emitted, the ticks it recorded missed."""

    emitted: list[tuple[str, datetime, int]] = field(default_factory=list)
    missed: int = 0


def plan(job: Job, after: datetime, now: datetime) -> tuple[list[PlannedTick], datetime]:
    """The rows for ``job``'s ticks in ``(after, now]`` (the latest runs if it is within
    the grace window, the others are ``missed``), and the job's next tick after ``now``."""
    window = ticks_between(job.cron, job.timezone, after, now, keep_last=MAX_MISSED_ROWS)
    if window.dropped:
        log.warning("tick.missed_not_recorded", job=job.name, count=window.dropped)
    if not window.ticks:
        return [], window.following
    latest = window.ticks[-1]
    runs = (now - latest).total_seconds() <= job.grace_s
    planned = []
    for tick in window.ticks:
        late = (now - tick).total_seconds()
        if tick == latest and runs:
            planned.append(PlannedTick(job.name, tick, "scheduled"))
        elif late <= job.grace_s:
            reason = f"coalesced: the tick at {latest.isoformat()} ran instead"
            planned.append(PlannedTick(job.name, tick, "missed", reason))
        else:
            reason = f"missed: {late:.0f} s after its tick, past the {job.grace_s:.0f} s grace"
            planned.append(PlannedTick(job.name, tick, "missed", reason))
    return planned, window.following


async def register_jobs(pool: asyncpg.Pool, jobs: Iterable[Job], now: datetime) -> None:
    """Upsert each job's row; ``enabled_since`` moves to ``now`` when a job is enabled."""
    rows = [(j.name, j.cron, j.timezone.key, j.enabled, now) for j in jobs]
    await pool.executemany(
        """
        INSERT INTO scheduler_jobs (job, cron, timezone, enabled, enabled_since, updated_at)
        VALUES ($1, $2, $3, $4, $5, $5)
        ON CONFLICT (job) DO UPDATE SET
            cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, enabled = EXCLUDED.enabled,
            enabled_since = CASE WHEN scheduler_jobs.enabled AND EXCLUDED.enabled
                                 THEN scheduler_jobs.enabled_since
                                 ELSE EXCLUDED.enabled_since END,
            updated_at = EXCLUDED.updated_at
        """,
        rows,
    )


async def baselines(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, datetime]:
    """Per job, the instant after which its ticks are still to be decided: its latest
    scheduled tick, or when it was enabled if that is later."""
    rows = await conn.fetch(
        """
        SELECT s.job, greatest(s.enabled_since, (
                   SELECT r.tick FROM job_runs r WHERE r.job = s.job AND r.trigger = 'schedule'
                   ORDER BY r.tick DESC LIMIT 1)) AS since
        FROM scheduler_jobs s WHERE s.job = ANY($1::text[])
        """,
        list(names),
    )
    return {r["job"]: r["since"] for r in rows}


async def claim(
    conn: asyncpg.Connection, planned: Sequence[PlannedTick], now: datetime, params: dict[str, str]
) -> list[asyncpg.Record]:
    """Insert the planned rows (call inside a transaction); returns those that went in."""
    ordered = sorted(planned, key=lambda p: (p.job, p.tick))
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        INSERT INTO job_runs (job, tick, trigger, params, status, created_at, finished_at, error)
        SELECT v.job, v.tick, 'schedule', v.params::jsonb, v.status, $6,
               CASE WHEN v.status = 'missed' THEN $6::timestamptz END, v.error
        FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
             WITH ORDINALITY AS v(job, tick, params, status, error, n)
        ORDER BY v.n
        ON CONFLICT (job, tick) WHERE trigger = 'schedule' DO NOTHING
        RETURNING id, job, tick, status, params
        """,
        [p.job for p in ordered],
        [p.tick for p in ordered],
        [params[p.job] for p in ordered],
        [p.status for p in ordered],
        [p.error for p in ordered],
        now,
    )
    return rows


def run_event(row: asyncpg.Record, *, trigger: str, source: str, now: datetime) -> CloudEvent:
    """The event of run ``row`` (``id``, ``job``, ``tick``, ``params``)."""
    data = JobEvent(
        run_id=row["id"], job=row["job"], tick=row["tick"], trigger=trigger, params=row["params"]
    )
    return CloudEvent.create(
        id=run_event_id(row["id"]),
        type=job_event_type(row["job"]),
        source=source,
        subject=row["job"],
        data=data,
        time=now,
    )


class TickEmitter:
    """Emits the due ticks of ``jobs``; one per replica.

    It remembers each job's next tick, so a round in which nothing is due costs no
    query; when something is due, Postgres (not memory) says what is left to do.

    Args:
        pool: the scheduler's pool.
        jobs: the cron table; disabled jobs are skipped.
        source: CloudEvents ``source`` of the events.
        horizon: ticks older than this are never considered (the run retention: their
            rows would be pruned at once).
    """

    def __init__(
        self, pool: asyncpg.Pool, jobs: Sequence[Job], *, source: str, horizon: timedelta
    ) -> None:
        self.pool = pool
        self.jobs = [j for j in jobs if j.enabled]
        self.source = source
        self.horizon = horizon
        self._params = {j.name: j.params().model_dump_json(by_alias=True) for j in self.jobs}
        self._next_due: dict[str, datetime] = {}

    def next_due(self) -> datetime | None:
        """The earliest next tick known; None when a job's is unknown (due now)."""
        if len(self._next_due) < len(self.jobs):
            return None
        return min(self._next_due.values(), default=None)

    async def emit_due(self, now: datetime) -> TickReport:
        """Record every due tick of every enabled job and emit the runs it won."""
        report = TickReport()
        due = [j for j in self.jobs if self._next_due.get(j.name, now) <= now]
        if not due:
            return report
        async with self.pool.acquire() as conn:
            since = await baselines(conn, [j.name for j in due])
            if missing := [j for j in due if j.name not in since]:
                # Its row went (deleted by hand?): start it afresh, from now.
                await register_jobs(self.pool, missing, now)
            planned: list[PlannedTick] = []
            following: dict[str, datetime] = {}
            for job in due:
                after = max(since.get(job.name) or now, now - self.horizon)
                rows, following[job.name] = plan(job, after, now)
                planned.extend(rows)
            if planned:
                async with conn.transaction():
                    inserted = await claim(conn, planned, now, self._params)
                    await enqueue_many(
                        conn,
                        [
                            run_event(row, trigger="schedule", source=self.source, now=now)
                            for row in inserted
                            if row["status"] == "scheduled"
                        ],
                    )
                # Counted once committed: a rolled-back round emitted nothing.
                report.emitted = [
                    (r["job"], r["tick"], r["id"]) for r in inserted if r["status"] == "scheduled"
                ]
                missed = [r["job"] for r in inserted if r["status"] == "missed"]
                report.missed = len(missed)
                for job_name in missed:
                    TICKS.labels(job_name, "missed").inc()
        # Only after a successful round: a failed one is decided again from Postgres.
        self._next_due.update(following)
        for name, tick in following.items():
            NEXT_TICK_SECONDS.labels(name).set((tick - now).total_seconds())
        for job_name, _, _ in report.emitted:
            TICKS.labels(job_name, "emitted").inc()
        if len(report.emitted) <= LOG_EACH_RUN_UP_TO:
            for job_name, tick, run_id in report.emitted:
                log.info("tick.emitted", job=job_name, tick=tick.isoformat(), run_id=run_id)
        else:
            log.info("tick.emitted", runs=len(report.emitted), at=now.isoformat())
        if report.missed:
            log.warning("tick.missed", count=report.missed)
        return report
