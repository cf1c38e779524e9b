"""Run history is bounded: rows past the retention go, and only those."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.scheduler.clock import ManualClock
from services.scheduler.history import prune_history
from shared.runs import add_totals, finish_run, start_run
from tests.conftest import scheduler_settings

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


async def add_run(db, job: str, *, age_days: float, status: str = "succeeded", ended=True) -> int:
    at = NOW - timedelta(days=age_days)
    return await db.fetchval(
        """
        INSERT INTO job_runs (job, tick, trigger, status, created_at, finished_at)
        VALUES ($1, $2, 'schedule', $3, $2, $4) RETURNING id
        """,
        job,
        at,
        status,
        at if ended else None,
    )


async def test_retention_prunes_old_rows_and_only_those(db) -> None:
    old = [
        await add_run(db, "a", age_days=45),
        await add_run(db, "a", age_days=31, status="missed"),
        await add_run(db, "a", age_days=40, status="scheduled", ended=False),  # stuck for good
        await add_run(db, "b", age_days=60, status="failed"),
    ]
    kept = [
        await add_run(db, "a", age_days=29),
        await add_run(db, "a", age_days=1, status="running", ended=False),
        # b's newest run is kept whatever its age: GET /v1/jobs still shows it.
        await add_run(db, "b", age_days=50),
    ]
    # Started long ago but finished recently: its last activity counts.
    long_run = await add_run(db, "c", age_days=2)
    await db.execute(
        "UPDATE job_runs SET created_at = $2, started_at = $2 WHERE id = $1",
        long_run,
        NOW - timedelta(days=40),
    )
    kept.append(long_run)
    await db.execute(
        """
        INSERT INTO processed_messages (consumer, event_id, processed_at)
        VALUES ('syncer.orders', 'old', $1), ('syncer.orders', 'new', $2)
        """,
        NOW - timedelta(days=31),
        NOW - timedelta(days=29),
    )

    report = await prune_history(db, older_than=NOW - timedelta(days=30))

    assert report is not None
    assert (report.job_runs, report.processed_messages) == (len(old), 1)
    assert sorted(r["id"] for r in await db.fetch("SELECT id FROM job_runs")) == sorted(kept)
    assert await db.fetchval("SELECT array_agg(event_id) FROM processed_messages") == ["new"]
    assert (await prune_history(db, older_than=NOW - timedelta(days=30))).job_runs == 0


async def test_only_one_replica_prunes_at_a_time(db) -> None:
    await add_run(db, "a", age_days=45)
    await add_run(db, "a", age_days=1)
    async with db.acquire() as conn, conn.transaction():
        # Another replica is pruning: it holds the lock.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x63726D7072756E)
        assert await prune_history(db, older_than=NOW - timedelta(days=30)) is None
    assert (await prune_history(db, older_than=NOW - timedelta(days=30))).job_runs == 1


async def test_the_scheduler_prunes_with_its_retention_setting(
    make_scheduler, database, namespace, db
) -> None:
    await add_run(db, "a", age_days=8)
    await add_run(db, "a", age_days=6)
    settings = scheduler_settings(database, namespace, run_retention_days=7)
    scheduler = await make_scheduler(settings, jobs=[], clock=ManualClock(NOW), run_loop=False)
    await scheduler.round()
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 1


async def test_a_run_starts_once_finishes_once_and_adds_totals_without_losing_any(db) -> None:
    run_id = await add_run(db, "a", age_days=0, status="scheduled", ended=False)
    assert await start_run(db, run_id) is True
    assert await start_run(db, run_id) is True  # redelivered while running: run it again
    await asyncio.gather(*(add_totals(db, run_id, {"profiles": 1, "failed": 0}) for _ in range(20)))
    await add_totals(db, run_id, {"packages": 2.5})
    assert await finish_run(db, run_id, "succeeded", {"durationSeconds": 3}) is True
    assert await finish_run(db, run_id, "failed", error="late") is False
    assert await start_run(db, run_id) is False
    row = await db.fetchrow("SELECT * FROM job_runs WHERE id = $1", run_id)
    assert row["status"] == "succeeded" and row["attempts"] == 2 and row["error"] is None
    assert row["totals"] == {"profiles": 20, "failed": 0, "packages": 2.5, "durationSeconds": 3}
