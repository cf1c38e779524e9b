"""Several scheduler replicas, one database: every tick emitted exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.scheduler.clock import ManualClock
from tests.conftest import TEST_JOBS_QUEUE, eventually, scheduler_settings
from tests.helpers import get_messages
from tests.scheduler.conftest import T0, advance, job

MINUTES = 180


def expected_ticks() -> dict[str, set]:
    minutes = [T0 + timedelta(minutes=m) for m in range(1, MINUTES + 1)]
    return {
        "tests.every_minute": set(minutes),
        "tests.every_five": {t for t in minutes if t.minute % 5 == 0},
        "tests.hourly": {t for t in minutes if t.minute == 0},
    }


JOBS = [
    job("tests.every_minute", "* * * * *"),
    job("tests.every_five", "*/5 * * * *"),
    job("tests.hourly", "0 * * * *"),
]


async def assert_each_tick_once(db, namespace: str, expected: dict[str, set]) -> None:
    doubled = await db.fetch(
        "SELECT job, tick, count(*) FROM job_runs GROUP BY job, tick HAVING count(*) > 1"
    )
    assert doubled == []
    rows = await db.fetch("SELECT id, job, tick, status FROM job_runs")
    got: dict[str, set] = {name: set() for name in expected}
    for row in rows:
        got[row["job"]].add(row["tick"])
    assert got == expected
    assert {r["status"] for r in rows} == {"scheduled"}
    # One outbox row per run, and RabbitMQ got each event once.
    event_ids = {f"job-run-{r['id']}" for r in rows}
    assert {r["event_id"] for r in await db.fetch("SELECT event_id FROM outbox")} == event_ids
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL")
    )
    messages = await get_messages(f"{namespace}{TEST_JOBS_QUEUE.name}", limit=len(rows) + 10)
    assert sorted(m.message_id for m in messages) == sorted(event_ids)


async def test_three_replicas_emit_each_tick_exactly_once_over_many_ticks(
    make_scheduler, database, namespace, db
) -> None:
    clock = ManualClock(T0)
    settings = scheduler_settings(database, namespace)
    replicas = [await make_scheduler(settings, jobs=JOBS, clock=clock) for _ in range(3)]
    for _ in range(MINUTES):
        await advance(clock, replicas, 60)
    await assert_each_tick_once(db, namespace, expected_ticks())
    emitted = await db.fetchval("SELECT count(*) FROM job_runs")
    assert emitted == sum(len(t) for t in expected_ticks().values())


async def test_a_replica_killed_while_ticking_loses_and_doubles_nothing(
    make_scheduler, database, namespace, db
) -> None:
    clock = ManualClock(T0)
    settings = scheduler_settings(database, namespace)
    replicas = [await make_scheduler(settings, jobs=JOBS, clock=clock) for _ in range(3)]
    for minute in range(1, MINUTES + 1):
        if minute == MINUTES // 2:
            # Kill one the moment the tick is due, like SIGKILL: its task ends wherever
            # it was, an open transaction rolls back.
            victim = replicas.pop()
            clock.advance(60)
            await asyncio.sleep(0.002)
            await victim.supervisor["ticks"].stop()  # cancelled wherever it was
            await advance(clock, replicas, 0)
        else:
            await advance(clock, replicas, 60)
    await assert_each_tick_once(db, namespace, expected_ticks())


async def blocked(db, statement: str, count: int = 1) -> list[int]:
    """Backends of this database waiting on a lock while running ``statement``."""

    async def probe() -> list[int]:
        rows = await db.fetch(
            """
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND position($1 in query) > 0
            """,
            statement,
        )
        return [r["pid"] for r in rows] if len(rows) >= count else []

    return await eventually(probe)


async def test_a_replica_dying_between_insert_and_commit_leaves_the_tick_to_the_others(
    make_scheduler, database, namespace, db
) -> None:
    clock = ManualClock(T0)
    settings = scheduler_settings(database, namespace)
    a, b, c = [
        await make_scheduler(settings, jobs=JOBS, clock=clock, run_loop=False) for _ in range(3)
    ]
    for replica in (a, b, c):
        await replica.round()  # nothing due yet: each learns the next tick
    clock.advance(60 * 5)  # every_minute and every_five due; every_minute's 4 older ones missed

    async with db.acquire() as locker:
        hold = locker.transaction()
        await hold.start()
        # A claims the ticks, then waits to write the outbox; B and C wait on A's rows.
        await locker.execute("LOCK TABLE outbox IN SHARE MODE")
        dying = asyncio.create_task(a.round())
        [a_pid] = await blocked(db, "INSERT INTO outbox")
        others = [asyncio.create_task(r.round()) for r in (b, c)]
        await blocked(db, "INSERT INTO job_runs", count=2)
        # A's process dies: its connection drops, Postgres rolls its transaction back.
        await db.execute("SELECT pg_terminate_backend($1)", a_pid)
        with pytest.raises(Exception):  # noqa: B017 (any connection error)
            await dying
        await blocked(db, "INSERT INTO outbox")  # B or C got the rows, waits for the lock
        await hold.rollback()
    reports = await asyncio.gather(*others)

    emitted = sorted((j, t) for report in reports for j, t, _ in report.emitted)
    assert emitted == [
        ("tests.every_five", T0 + timedelta(minutes=5)),
        ("tests.every_minute", T0 + timedelta(minutes=5)),
    ]
    assert sum(r.missed for r in reports) == 4
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 6
    assert await db.fetchval("SELECT count(*) FROM outbox") == 2
    # The survivors carry on.
    clock.advance(60)
    reports = await asyncio.gather(b.round(), c.round())
    assert sorted(j for r in reports for j, _, _ in r.emitted) == ["tests.every_minute"]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 3
