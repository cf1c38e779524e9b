"""After downtime: one coalesced run within the grace window, the rest ``missed``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scheduler.clock import ManualClock
from tests.conftest import scheduler_settings
from tests.scheduler.conftest import T0, job, runs


async def start(make_scheduler, database, namespace, jobs, clock):
    settings = scheduler_settings(database, namespace)
    return await make_scheduler(settings, jobs=jobs, clock=clock, run_loop=False)


async def test_a_stop_longer_than_the_grace_window_gives_one_coalesced_run_and_the_rest_missed(
    make_scheduler, database, namespace, db
) -> None:
    every_minute = job("tests.every_minute", "* * * * *", grace_s=120)
    clock = ManualClock(T0)
    first = await start(make_scheduler, database, namespace, [every_minute], clock)
    for _ in range(5):
        clock.advance(60)
        await first.round()
    await first.stop()

    clock.advance(10 * 60 + 30)  # down for 10.5 minutes: ticks 6..15 missed, now 15:30
    second = await start(make_scheduler, database, namespace, [every_minute], clock)
    report = await second.round()

    rows = await runs(db)
    assert len(rows) == 15
    assert [r["status"] for r in rows[:5]] == ["scheduled"] * 5
    later = {r["tick"]: r for r in rows[5:]}
    ran = later.pop(T0 + timedelta(minutes=15))
    assert ran["status"] == "scheduled" and ran["error"] is None
    assert report.emitted == [("tests.every_minute", ran["tick"], ran["id"])]
    assert {r["status"] for r in later.values()} == {"missed"} and report.missed == 9
    # Within the grace window but not the latest: coalesced into the one that ran.
    assert later[T0 + timedelta(minutes=14)]["error"].startswith("coalesced")
    assert later[T0 + timedelta(minutes=13)]["error"].startswith("missed: 150 s")
    assert all(r["finished_at"] == clock.now() for r in later.values())
    assert await db.fetchval("SELECT count(*) FROM outbox") == 6

    await second.round()  # nothing left to decide
    assert len(await runs(db)) == 15


async def test_ticks_all_past_the_grace_window_are_only_recorded_missed(
    make_scheduler, database, namespace, db
) -> None:
    hourly = job("tests.hourly", "0 * * * *", grace_s=600)
    clock = ManualClock(T0)
    first = await start(make_scheduler, database, namespace, [hourly], clock)
    clock.advance(3600)
    await first.round()
    await first.stop()

    clock.advance(3 * 3600 + 20 * 60)  # back at 04:20: 02:00, 03:00, 04:00 missed
    second = await start(make_scheduler, database, namespace, [hourly], clock)
    report = await second.round()
    assert report.emitted == [] and report.missed == 3
    assert [(r["tick"].hour, r["status"]) for r in await runs(db)] == [
        (1, "scheduled"),
        (2, "missed"),
        (3, "missed"),
        (4, "missed"),
    ]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def test_a_new_job_starts_with_its_next_tick_not_its_past(
    make_scheduler, database, namespace, db
) -> None:
    daily = job("tests.daily", "0 2 * * *", grace_s=12 * 3600)
    clock = ManualClock(datetime(2030, 1, 1, 10, 0, tzinfo=UTC))  # 8 h after today's tick
    scheduler = await start(make_scheduler, database, namespace, [daily], clock)
    assert (await scheduler.round()).emitted == []
    assert await runs(db) == []
    clock.set(datetime(2030, 1, 2, 2, 0, 5, tzinfo=UTC))
    [(_, tick, _)] = (await scheduler.round()).emitted
    assert tick == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)


async def test_a_disabled_job_emits_nothing_and_once_enabled_does_not_replay_its_past(
    make_scheduler, database, namespace, db
) -> None:
    clock = ManualClock(T0)
    disabled = job("tests.every_minute", "* * * * *", enabled=False)
    scheduler = await start(make_scheduler, database, namespace, [disabled], clock)
    for _ in range(10):
        clock.advance(60)
        assert (await scheduler.round()).emitted == []
    await scheduler.stop()
    assert await runs(db) == []

    enabled = job("tests.every_minute", "* * * * *", enabled=True)
    scheduler = await start(make_scheduler, database, namespace, [enabled], clock)
    assert (await scheduler.round()).emitted == []  # no run, no "missed" for minutes 1-10
    clock.advance(60)
    assert len((await scheduler.round()).emitted) == 1
    assert [r["tick"] for r in await runs(db)] == [T0 + timedelta(minutes=11)]


async def test_a_job_in_a_time_zone_ticks_at_its_local_time_across_dst(
    make_scheduler, database, namespace, db
) -> None:
    # 2030-03-10: New York skips 02:00-03:00. The 02:30 job still runs once that day.
    new_york = job("tests.new_york", "30 2 * * *", tz="America/New_York", grace_s=3600)
    clock = ManualClock(datetime(2030, 3, 8, 12, 0, tzinfo=UTC))
    scheduler = await start(make_scheduler, database, namespace, [new_york], clock)
    while clock.now() < datetime(2030, 3, 12, 12, 0, tzinfo=UTC):
        clock.advance(15 * 60)
        await scheduler.round()
    rows = await runs(db)
    assert [(r["tick"], r["status"]) for r in rows] == [
        (datetime(2030, 3, 9, 7, 30, tzinfo=UTC), "scheduled"),  # 02:30 EST
        (datetime(2030, 3, 10, 7, 30, tzinfo=UTC), "scheduled"),  # 03:30 EDT: after the gap
        (datetime(2030, 3, 11, 6, 30, tzinfo=UTC), "scheduled"),  # 02:30 EDT
        (datetime(2030, 3, 12, 6, 30, tzinfo=UTC), "scheduled"),
    ]


async def test_a_job_whose_row_was_deleted_starts_afresh(
    make_scheduler, database, namespace, db
) -> None:
    clock = ManualClock(T0)
    every_minute = job("tests.every_minute", "* * * * *")
    scheduler = await start(make_scheduler, database, namespace, [every_minute], clock)
    await db.execute("DELETE FROM scheduler_jobs")
    clock.advance(90)
    assert (await scheduler.round()).emitted == []  # re-registered at 00:01:30
    clock.advance(30)
    assert [t for _, t, _ in (await scheduler.round()).emitted] == [T0 + timedelta(minutes=2)]
