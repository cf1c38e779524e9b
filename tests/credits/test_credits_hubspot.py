"""Credit write-through to HubSpot: Postgres first, HubSpot shortly after, coalesced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import eventually, intake_settings, syncer_settings

KEY = "test-booking-api-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    # A generous confirm deadline: a host loaded several times over (parallel workers)
    # can keep RabbitMQ from confirming 250 publishes within the 3 s default.
    settings = intake_settings(namespace, api_keys={"booking-api": KEY}, publish_timeout_s=30)
    return await make_intake(settings)


def notification(version: int, *, student: str = "st-17", **credits: int) -> dict[str, Any]:
    return {
        "idempotencyKey": f"{student}-v{version}",
        "reason": "booking_created",
        "occurredAt": "2026-11-21T10:00:00Z",
        "contact": {"studentId": student, "email": f"{student}@example.test"},
        "credits": credits or {"sj_credits": 3},
        "version": version,
    }


async def post(http, url: str, body: Any) -> int:
    async with http.post(f"{url}/v1/events/credits", json=body, headers=AUTH) as resp:
        return resp.status


async def hubspot_contacts(http, sandbox: str) -> dict[str, dict[str, str]]:
    """HubSpot's contacts in the sandbox, by email."""
    async with http.get(f"{sandbox}/_sandbox/hubspot/objects/contacts") as resp:
        records = (await resp.json())["results"]
    return {r["properties"].get("email", ""): r["properties"] for r in records}


async def hubspot_calls(http, sandbox: str, path_part: str) -> int:
    async with http.get(f"{sandbox}/_sandbox/requests", params={"provider": "hubspot"}) as resp:
        requests = (await resp.json())["requests"]
    return sum(1 for r in requests if path_part in r["path"] and r["status"] and r["status"] < 300)


async def balance(db, field: str = "sj_credits") -> int | None:
    return await db.fetchval("SELECT balance FROM contact_credits WHERE credit_type = $1", field)


async def test_postgres_has_the_balance_before_hubspot_then_hubspot_follows(
    http, app_intake, syncer, sandbox, db
) -> None:
    # HubSpot answers slowly: the balance must not wait for it.
    async with http.post(
        f"{sandbox}/_sandbox/faults", json={"provider": "hubspot", "latency_ms": 700}
    ):
        pass
    assert await post(http, app_intake, notification(2, sj_credits=3)) == 202
    assert await eventually(lambda: balance(db)) == 3
    assert "st-17@example.test" not in await hubspot_contacts(http, sandbox)

    contacts = await eventually(lambda: hubspot_contacts(http, sandbox), timeout_s=10)
    assert contacts["st-17@example.test"]["sj_credits"] == "3"
    row = await eventually(
        lambda: db.fetchrow("SELECT * FROM contacts WHERE hubspot_synced_version = change_version")
    )
    assert row["hubspot_id"] and row["hubspot_error"] is None
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE synced_at IS NULL") == 0

    # The same notification again, and an older one: nothing changes anywhere.
    assert await post(http, app_intake, notification(2, sj_credits=3)) == 202
    older = notification(1, sj_credits=9)
    older["idempotencyKey"] = "older"
    assert await post(http, app_intake, older) == 202
    # The repeat is dropped by its idempotency key; the older one is processed, ignored.
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM processed_messages WHERE consumer = 'syncer.credits'"
        )
    )
    await asyncio.sleep(0.5)
    assert await balance(db) == 3
    assert (await hubspot_contacts(http, sandbox))["st-17@example.test"]["sj_credits"] == "3"
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_hubspot_down_does_not_delay_postgres_and_catches_up(
    http, app_intake, syncer, sandbox, db
) -> None:
    async with http.post(
        f"{sandbox}/_sandbox/faults", json={"provider": "hubspot", "status": 503}
    ) as resp:
        fault = (await resp.json())["id"]
    assert await post(http, app_intake, notification(1, sj_credits=5)) == 202
    assert await eventually(lambda: balance(db)) == 5
    await asyncio.sleep(1.0)  # HubSpot stays down a while; the push keeps failing
    assert await db.fetchval("SELECT hubspot_synced_version FROM contacts") == 0
    async with http.delete(f"{sandbox}/_sandbox/faults/{fault}"):
        pass
    contacts = await eventually(lambda: hubspot_contacts(http, sandbox), timeout_s=20)
    assert contacts["st-17@example.test"]["sj_credits"] == "5"


async def test_250_concurrent_notifications_reach_hubspot_in_a_handful_of_calls(
    http, app_intake, make_syncer, database, namespace, sandbox, db
) -> None:
    # A wider window than the 200 ms default: a loaded test machine (parallel
    # workers) delivers the 250 more slowly than production would.
    await make_syncer(syncer_settings(database, namespace, sandbox, hubspot_push_window_s=0.5))
    bodies = [notification(1, student=f"st-{i}", cs_credits=i) for i in range(250)]
    statuses = await asyncio.gather(*(post(http, app_intake, b) for b in bodies))
    assert set(statuses) == {202}
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 250 FROM contacts WHERE hubspot_synced_version = change_version"
        ),
        timeout_s=60,  # a deadline, not a speed: a host loaded three times over needs ~30 s
    )
    contacts = await hubspot_contacts(http, sandbox)
    assert len(contacts) == 250
    assert contacts["st-249@example.test"]["cs_credits"] == "249"
    calls = await hubspot_calls(http, sandbox, "/crm/v3/objects/contacts/batch/")
    assert calls <= 6, calls


async def test_a_push_batch_hubspot_refuses_whole_for_one_contact_delivers_the_others(
    http, app_intake, make_syncer, database, namespace, sandbox, db
) -> None:
    bad = {"property": "email", "values": ["st-bad@example.test"]}
    rule = {"objectType": "contacts", "match": bad, "wholeBatch": True}
    async with http.post(f"{sandbox}/_sandbox/hubspot/fail-records", json=rule) as resp:
        assert resp.status < 300, await resp.text()
    await make_syncer(syncer_settings(database, namespace, sandbox, hubspot_push_window_s=0.5))
    students = ["st-a", "st-bad", "st-b", "st-c"]
    statuses = await asyncio.gather(
        *(post(http, app_intake, notification(1, student=s)) for s in students)
    )
    assert set(statuses) == {202}
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 3 FROM contacts WHERE hubspot_synced_version = change_version"
        ),
        timeout_s=20,
    )
    assert set(await hubspot_contacts(http, sandbox)) == {
        "st-a@example.test", "st-b@example.test", "st-c@example.test"
    }  # fmt: skip
    refused = await eventually(
        lambda: db.fetchrow(
            "SELECT student_id, hubspot_error FROM contacts WHERE hubspot_error IS NOT NULL"
        )
    )
    assert refused["student_id"] == "st-bad" and "VALIDATION_ERROR" in refused["hubspot_error"]
