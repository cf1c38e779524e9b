"""Job runs never stay ``running`` after their event is dead-lettered: invalid parameters
end the run ``failed`` at once, naming the field (for a dead-lettered bulk chunk, see
tests/packages/test_bulk_failures.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.scheduler.history import create_manual_run
from shared.jobs import ENROLLMENTS_EXPIRE, HUBSPOT_BATCH_SYNC, JOB_QUEUES, PACKAGES_BULK_SYNC
from shared.topology import Topology
from tests.conftest import eventually
from tests.helpers import get_messages


async def trigger(db, job: str, params: dict[str, Any]) -> int:
    """A manual run with ``params`` as given (the admin API would have refused bad ones;
    the handler must not trust that)."""
    run = await create_manual_run(
        db, job=job, params=params, triggered_by="test", idempotency_key=None,
        now=datetime.now(UTC), source="urn:test",
    )  # fmt: skip
    return run.run_id


async def ended(db, run_id: int, timeout_s: float = 15) -> Any:
    return await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM job_runs WHERE id = $1 AND status IN ('succeeded', 'failed')", run_id
        ),
        timeout_s=timeout_s,
        interval_s=0.1,
    )


@pytest.mark.parametrize(
    ("job", "params", "field"),
    [
        (PACKAGES_BULK_SYNC, {"batchSize": 0}, "params.batchSize"),
        (HUBSPOT_BATCH_SYNC, {"objects": ["widgets"]}, "params.objects.0"),
        (ENROLLMENTS_EXPIRE, {"olderThan": "1d"}, "olderThan"),
    ],
)
async def test_invalid_job_parameters_fail_the_run_and_dead_letter_at_once(
    syncer, db, namespace, job: str, params: dict[str, Any], field: str
) -> None:
    run_id = await trigger(db, job, params)
    run = await ended(db, run_id)
    assert run["status"] == "failed"
    assert field in run["error"], run["error"]
    assert run["attempts"] <= 1
    dead_queue = Topology(namespace).dead_queue(JOB_QUEUES[job])
    (dead,) = await eventually(lambda: get_messages(dead_queue), timeout_s=5)
    assert dead.headers["x-crmsync-attempt"] == 1
    assert field in str(dead.headers["x-crmsync-error"])
