"""``hubspot.drift_check``: HubSpot's credit balances read back and compared with Postgres.

A contact's credits are changed in the sandbox behind crmsync's back; the run, triggered
through the admin API like any job, finds exactly that contact, and ``repair=true``
makes HubSpot right again through a re-queued push.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.jobs import HUBSPOT_DRIFT_CHECK
from tests.conftest import ADMIN_TOKEN, eventually, intake_settings, scheduler_settings
from tests.credits.test_credits_hubspot import KEY, hubspot_contacts, notification, post
from tests.syncer.test_job_failures import ended

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HUBSPOT = {"Authorization": "Bearer sandbox-hubspot-token"}  # the sandbox's default token


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    return await make_intake(intake_settings(namespace, api_keys={"booking-api": KEY}))


@pytest.fixture
async def admin(make_scheduler_app, database, namespace) -> str:
    url, _ = await make_scheduler_app(scheduler_settings(database, namespace), run_loop=False)
    return url


async def run_drift_check(http, admin: str, db, params: dict[str, Any]) -> Any:
    async with http.post(
        f"{admin}/v1/jobs/{HUBSPOT_DRIFT_CHECK}/runs", json=params, headers=ADMIN
    ) as resp:
        assert resp.status == 202, await resp.text()
        run_id = (await resp.json())["runId"]
    run = await ended(db, run_id, timeout_s=30)
    assert run["status"] == "succeeded", run["error"]
    return run["totals"]


async def test_a_contact_changed_behind_our_back_is_found_and_repaired(
    http, app_intake, syncer, sandbox, admin, db
) -> None:
    for i, credits in enumerate((3, 5, 7), start=1):
        body = notification(1, student=f"st-{i}", sj_credits=credits, cs_credits=1)
        assert await post(http, app_intake, body) == 202
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 3 FROM contacts"
            " WHERE hubspot_id IS NOT NULL AND hubspot_synced_version = change_version"
        ),
        timeout_s=20,
    )
    st2 = await db.fetchrow("SELECT id, hubspot_id FROM contacts WHERE student_id = 'st-2'")
    # Someone edits st-2 in HubSpot: crmsync is not told.
    async with http.post(
        f"{sandbox}/hubspot/crm/v3/objects/contacts/batch/update",
        json={"inputs": [{"id": st2["hubspot_id"], "properties": {"sj_credits": "99"}}]},
        headers=HUBSPOT,
    ) as resp:
        assert resp.status == 200, await resp.text()

    totals = await run_drift_check(http, admin, db, {})
    assert {k: totals[k] for k in ("checked", "equal", "drifted", "missing", "repairsQueued")} == {
        "checked": 3, "equal": 2, "drifted": 1, "missing": 0, "repairsQueued": 0,
    }  # fmt: skip
    [drift] = totals["drifts"]
    assert drift["contactId"] == st2["id"] and drift["kind"] == "drifted"
    assert drift["fields"] == {"sj_credits": {"postgres": 5, "hubspot": "99"}}
    assert REGISTRY.get_sample_value("crmsync_drift_records", {"kind": "drifted"}) == 1
    # Without repair, HubSpot is left as it is.
    assert (await hubspot_contacts(http, sandbox))["st-2@example.test"]["sj_credits"] == "99"

    totals = await run_drift_check(http, admin, db, {"repair": True})
    assert (totals["drifted"], totals["repairsQueued"]) == (1, 1)

    async def repaired() -> bool:
        return (await hubspot_contacts(http, sandbox))["st-2@example.test"]["sj_credits"] == "5"

    await eventually(repaired, timeout_s=20)
    totals = await run_drift_check(http, admin, db, {})
    assert (totals["checked"], totals["equal"], totals["drifted"]) == (3, 3, 0)
    assert REGISTRY.get_sample_value("crmsync_drift_records", {"kind": "drifted"}) == 0


async def test_the_drift_check_is_a_job_of_the_admin_api(http, admin) -> None:
    async with http.get(f"{admin}/v1/jobs", headers=ADMIN) as resp:
        jobs = {job["name"]: job for job in (await resp.json())["jobs"]}
    assert jobs[HUBSPOT_DRIFT_CHECK]["enabled"] is True
    assert jobs[HUBSPOT_DRIFT_CHECK]["schedule"]["cron"] == "30 4 * * *"
    async with http.post(
        f"{admin}/v1/jobs/{HUBSPOT_DRIFT_CHECK}/runs", json={"repair": "yes"}, headers=ADMIN
    ) as resp:
        problem = await resp.json()
    assert resp.status == 422 and problem["errors"][0]["pointer"] == "/repair"
