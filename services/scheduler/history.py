"""Run history: manual runs, reading runs back, and pruning past the retention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.scheduler.metrics import MANUAL_RUNS, PRUNED_ROWS
from services.scheduler.ticks import run_event
from shared.outbox import enqueue

# Any fixed 64-bit number; names "crmsync pruning" among advisory locks, so only one
# replica prunes at a time.
PRUNE_LOCK_ID = 0x63726D7072756E
# Rows deleted per statement, so no pruning transaction holds locks for long.
PRUNE_BATCH = 5_000

RUN_COLUMNS = """id, job, tick, trigger, triggered_by, params, status, attempts, created_at,
                 started_at, finished_at, totals, error"""


class IdempotencyConflict(Exception):
    """An Idempotency-Key already used for a run with other parameters."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"Idempotency-Key already used by run {run_id} with other parameters")
        self.run_id = run_id


@dataclass(frozen=True)
class ManualRun:
    """A manual run: its id, and whether this request created it (False: the same
    Idempotency-Key had already)."""

    run_id: int
    created: bool


async def create_manual_run(
    pool: asyncpg.Pool,
    *,
    job: str,
    params: dict[str, Any],
    triggered_by: str,
    idempotency_key: str | None,
    now: datetime,
    source: str,
) -> ManualRun:
    """Insert a ``scheduled`` manual run and its event, in one transaction.

    Raises:
        IdempotencyConflict: ``idempotency_key`` was used with other parameters.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO job_runs (job, tick, trigger, triggered_by, idempotency_key, params,
                                  created_at)
            VALUES ($1, $2, 'manual', $3, $4, $5, $2)
            ON CONFLICT (job, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id, job, tick, params
            """,
            job,
            now,
            triggered_by,
            idempotency_key,
            params,
        )
        if row is None:
            existing = await conn.fetchrow(
                "SELECT id, params FROM job_runs WHERE job = $1 AND idempotency_key = $2",
                job,
                idempotency_key,
            )
            assert existing is not None
            if existing["params"] != params:
                raise IdempotencyConflict(existing["id"])
            return ManualRun(existing["id"], created=False)
        await enqueue(conn, run_event(row, trigger="manual", source=source, now=now))
    MANUAL_RUNS.labels(job).inc()
    return ManualRun(row["id"], created=True)


async def get_run(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM job_runs WHERE id = $1",  # noqa: S608 (RUN_COLUMNS is a constant)
        run_id,
    )
    return row


async def list_runs(
    pool: asyncpg.Pool, *, job: str | None, limit: int, before: int | None
) -> list[asyncpg.Record]:
    """Runs newest first (by id), of one job or all, with ids below ``before``."""
    rows: list[asyncpg.Record] = await pool.fetch(
        f"""
        SELECT {RUN_COLUMNS} FROM job_runs
        WHERE ($1::text IS NULL OR job = $1) AND ($2::bigint IS NULL OR id < $2)
        ORDER BY id DESC LIMIT $3
        """,  # noqa: S608 (RUN_COLUMNS is a constant)
        job,
        before,
        limit,
    )
    return rows


async def last_runs(pool: asyncpg.Pool, jobs: Sequence[str]) -> dict[str, asyncpg.Record]:
    """Each job's newest run, of either trigger."""
    rows = await pool.fetch(
        f"""
        SELECT r.* FROM unnest($1::text[]) AS j(name)
        CROSS JOIN LATERAL (
            SELECT {RUN_COLUMNS} FROM job_runs WHERE job = j.name ORDER BY id DESC LIMIT 1
        ) AS r
        """,  # noqa: S608 (RUN_COLUMNS is a constant)
        list(jobs),
    )
    return {r["job"]: r for r in rows}


@dataclass(frozen=True)
class PruneReport:
    job_runs: int
    processed_messages: int


async def prune_history(pool: asyncpg.Pool, *, older_than: datetime) -> PruneReport | None:
    """Delete runs whose last activity is before ``older_than``, and
    ``processed_messages`` rows recorded before it.

    A run's last activity is its end, or its creation if it never ended (a run stuck
    ``scheduled`` for the whole retention is history too). Each job's newest run is
    kept whatever its age, so ``GET /v1/jobs`` still shows a rare job's last run.

    Returns:
        how many rows went, or None when another replica holds the pruning lock.
    """
    runs = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK_ID):
                return None
            status = await conn.execute(
                """
                DELETE FROM job_runs WHERE id IN (
                    SELECT r.id FROM job_runs r
                    WHERE coalesce(r.finished_at, r.created_at) < $1
                      AND r.id <> (SELECT max(l.id) FROM job_runs l WHERE l.job = r.job)
                    LIMIT $2)
                """,
                older_than,
                PRUNE_BATCH,
            )
            deleted = int(status.split()[-1])
            runs += deleted
            if deleted < PRUNE_BATCH:
                processed = int(
                    (
                        await conn.execute(
                            "DELETE FROM processed_messages WHERE processed_at < $1", older_than
                        )
                    ).split()[-1]
                )
                break
    PRUNED_ROWS.labels("job_runs").inc(runs)
    PRUNED_ROWS.labels("processed_messages").inc(processed)
    return PruneReport(runs, processed)
