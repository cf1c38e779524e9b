"""Helpers for the scheduler's tests: test jobs, a shared manual clock, replicas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.scheduler.clock import ManualClock
from services.scheduler.jobs import Job
from shared.jobs import EnrollmentsExpireParams
from tests.conftest import TEST_JOBS_QUEUE, eventually

# A Tuesday, far from any DST change.
T0 = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)


def job(
    name: str, cron: str, *, tz: str = "UTC", grace_s: float = 300, enabled: bool = True
) -> Job:
    """A test job whose events all go to ``tests.jobs``."""
    return Job(
        name=name,
        cron=cron,
        timezone=ZoneInfo(tz),
        enabled=enabled,
        grace_s=grace_s,
        params=EnrollmentsExpireParams,
        queue=TEST_JOBS_QUEUE,
    )


async def advance(clock: ManualClock, replicas: list[Any], seconds: float) -> datetime:
    """Move the shared clock and wait until every replica has done a round at the new time."""
    now = clock.advance(seconds)

    async def caught_up() -> bool:
        return all(r.checked_at is not None and r.checked_at >= now for r in replicas)

    await eventually(caught_up, interval_s=0.001)
    return now


async def runs(db: Any, job_name: str | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT * FROM job_runs WHERE $1::text IS NULL OR job = $1 ORDER BY job, tick", job_name
    )
    return [dict(r) for r in rows]
