"""Cron in a job's time zone, ticks in UTC; the cron table from settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.scheduler.cron import next_tick, ticks_after, ticks_between
from services.scheduler.jobs import job_table
from shared.jobs import job_queue
from shared.settings import CommonSettings, JobSettings, SchedulerSettings
from tests.conftest import FIXTURES

NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_daily_job_in_the_dst_gap_still_runs_once_that_day() -> None:
    # 2024-03-10 02:00 EST → 03:00 EDT: 02:30 does not exist in New York that day.
    ticks = list(islice(ticks_after("30 2 * * *", NEW_YORK, utc(2024, 3, 8)), 4))
    assert ticks == [
        utc(2024, 3, 8, 7, 30),
        utc(2024, 3, 9, 7, 30),
        utc(2024, 3, 10, 7, 30),  # 03:30 EDT
        utc(2024, 3, 11, 6, 30),
    ]


def test_the_gap_tick_is_found_when_looking_from_just_after_the_jump() -> None:
    assert next_tick("30 2 * * *", NEW_YORK, utc(2024, 3, 10, 7, 10)) == utc(2024, 3, 10, 7, 30)


def test_a_daily_job_in_the_repeated_hour_runs_once() -> None:
    # 2024-11-03 02:00 EDT → 01:00 EST: 01:30 happens twice; the job runs at the first.
    ticks = list(islice(ticks_after("30 1 * * *", NEW_YORK, utc(2024, 11, 2)), 3))
    assert ticks == [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]


def test_sub_hourly_ticks_across_the_gap_are_increasing_and_never_doubled() -> None:
    ticks = list(islice(ticks_after("*/15 * * * *", NEW_YORK, utc(2024, 3, 10, 6)), 12))
    assert ticks == [utc(2024, 3, 10, 6) + timedelta(minutes=15 * i) for i in range(1, 13)]


def test_ticks_between_keeps_the_latest_and_counts_the_rest() -> None:
    window = ticks_between("* * * * *", UTC_ZONE, utc(2030, 1, 1), utc(2030, 1, 1, 1), keep_last=3)
    assert window.ticks == [utc(2030, 1, 1, 0, 58), utc(2030, 1, 1, 0, 59), utc(2030, 1, 1, 1)]
    assert window.dropped == 57
    assert window.following == utc(2030, 1, 1, 1, 1)


def test_the_cron_table_has_every_periodic_workload_with_its_default() -> None:
    jobs = {j.name: j for j in job_table(SchedulerSettings(_env_file=None))}
    assert {n: (j.cron, j.timezone.key, j.enabled) for n, j in jobs.items()} == {
        "enrollments.expire": ("0 2 * * *", "UTC", True),
        "packages.bulk_sync": ("0 2 * * *", "UTC", True),
        "hubspot.batch_sync": ("0 */2 * * *", "UTC", True),
        "repcard.sync": ("0 2 * * *", "UTC", True),
        "hubspot.drift_check": ("30 4 * * *", "UTC", True),
    }
    assert jobs["enrollments.expire"].queue == job_queue("enrollments.expire")
    assert jobs["enrollments.expire"].queue.name == "syncer.jobs.enrollments_expire"
    assert jobs["enrollments.expire"].event_type == "job.enrollments.expire"


def test_one_variable_changes_one_field_of_one_job(monkeypatch) -> None:
    monkeypatch.setenv("CRMSYNC_JOB_REPCARD_SYNC__ENABLED", "false")
    monkeypatch.setenv("CRMSYNC_JOB_REPCARD_SYNC__TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("CRMSYNC_JOB_HUBSPOT_BATCH_SYNC", '{"cron": "15 */4 * * *"}')
    settings = SchedulerSettings(_env_file=None)
    assert settings.job_repcard_sync.enabled is False
    assert settings.job_repcard_sync.timezone == "Europe/Berlin"
    assert settings.job_repcard_sync.cron == "0 2 * * *"  # the default stays
    assert settings.job_hubspot_batch_sync.cron == "15 */4 * * *"
    assert settings.job_hubspot_batch_sync.enabled is True


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cron", "61 * * * *", "not a valid cron"),
        ("cron", "* * * * * *", "five fields"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("grace_s", 0, "greater than or equal to 1"),
    ],
)
def test_a_bad_schedule_is_refused_at_start(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SchedulerSettings(_env_file=None, job_enrollments_expire={field: value})


def test_every_scheduler_variable_is_in_env_example() -> None:
    example = (FIXTURES.parent.parent / ".env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in example if line.startswith("CRMSYNC_")}
    names = set()
    for field in set(SchedulerSettings.model_fields) - set(CommonSettings.model_fields):
        if field.startswith("job_"):
            names |= {f"CRMSYNC_{field}__{sub}".upper() for sub in JobSettings.model_fields}
        else:
            names.add(f"CRMSYNC_{field}".upper())
    assert names - documented == set()
