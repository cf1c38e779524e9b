"""Credit notifications through intake to Postgres: write-through, idempotent, versioned."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import eventually, intake_settings

KEY = "test-booking-api-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    return await make_intake(intake_settings(namespace, api_keys={"booking-api": KEY}))


def notification(version: int, key: str | None = None, **credits: int) -> dict[str, Any]:
    return {
        "idempotencyKey": key or f"deduct-{version}",
        "reason": "booking_created",
        "occurredAt": "2026-11-21T10:00:00Z",
        "contact": {"studentId": "st-17", "email": "Ada@Example.test", "hubspotId": "90101"},
        "credits": credits or {"sj_credits": 3},
        "version": version,
    }


async def post(http, url: str, body: Any, headers: dict[str, str] = AUTH) -> tuple[int, Any]:
    async with http.post(f"{url}/v1/events/credits", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def balances(db) -> dict[str, int]:
    rows = await db.fetch("SELECT credit_type, balance FROM contact_credits")
    return {r["credit_type"]: r["balance"] for r in rows}


async def test_a_deduction_reaches_postgres_at_once(http, app_intake, syncer, db) -> None:
    status, body = await post(http, app_intake, notification(2, sj_credits=3))
    assert status == 202 and body["id"] == "booking-api:deduct-2"
    assert await eventually(lambda: balances(db)) == {"sj_credits": 3}
    contact = await db.fetchrow("SELECT * FROM contacts")
    assert (contact["student_id"], contact["email"], contact["hubspot_id"]) == (
        "st-17",
        "Ada@Example.test",
        "90101",
    )
    audit = await db.fetchrow("SELECT * FROM audit_log")
    assert audit["entity"] == "contact" and audit["details"]["credits"] == {"sj_credits": 3}


async def test_the_same_notification_twice_changes_nothing(http, app_intake, syncer, db) -> None:
    for _ in range(2):
        assert (await post(http, app_intake, notification(2, sj_credits=3)))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM processed_messages"))
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 1
    assert await db.fetchval("SELECT change_version FROM contacts") == 2


async def test_an_older_version_never_overwrites_a_newer_balance(
    http, app_intake, syncer, db
) -> None:
    assert (await post(http, app_intake, notification(5, sj_credits=1)))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM processed_messages"))
    assert (await post(http, app_intake, notification(4, sj_credits=9)))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM processed_messages"))
    assert await balances(db) == {"sj_credits": 1}
    # Another type at an older version is still applied: versions are per field.
    assert (await post(http, app_intake, notification(3, key="k3", cs_credits=7)))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 3 FROM processed_messages"))
    assert await balances(db) == {"sj_credits": 1, "cs_credits": 7}


async def test_app_token_names_are_mapped_to_credit_fields(http, app_intake, syncer, db) -> None:
    body = notification(1)
    body["credits"] = {
        "Situational Judgment Token": 1,
        "Clinical Skills Token": 2,
        "Mini-mock Token": 3,
        "Mock Discussion Token": 4,
        "Shared Token": 5,
    }
    assert (await post(http, app_intake, body))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 5 FROM contact_credits"))
    assert await balances(db) == {
        "sj_credits": 1,
        "cs_credits": 2,
        "sjmini_credits": 3,
        "mock_discussion_token": 4,
        "shared_mock_credits": 5,
    }


async def test_a_bulk_refund_batch_updates_every_contact(http, app_intake, syncer, db) -> None:
    items = [
        {"contact": {"studentId": f"st-{i}"}, "credits": {"shared_mock_credits": i}, "version": 1}
        for i in range(1000)
    ]
    body = {
        "idempotencyKey": "bulk-1",
        "reason": "bulk_refund",
        "occurredAt": "2026-11-21T10:00:00Z",
        "items": items,
    }
    assert (await post(http, app_intake, body))[0] == 202
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 1000 FROM contact_credits"), timeout_s=30
    )
    assert await db.fetchval("SELECT sum(balance) FROM contact_credits") == sum(range(1000))


async def test_bad_notifications_get_clear_errors(http, app_intake, namespace) -> None:
    status, problem = await post(http, app_intake, notification(1), headers={})
    assert status == 401 and problem["status"] == 401
    status, _ = await post(
        http, app_intake, notification(1), headers={"Authorization": "Bearer no"}
    )
    assert status == 401
    body = notification(1)
    body["credits"] = {"gold_stars": 3}
    status, problem = await post(http, app_intake, body)
    assert status == 422 and problem["errors"][0]["pointer"] == "/credits/gold_stars"
    assert "gold_stars" in problem["errors"][0]["detail"]
    body = notification(1)
    body["contact"] = {}
    status, problem = await post(http, app_intake, body)
    assert status == 422 and problem["errors"][0]["pointer"] == "/contact"
    body = {**notification(1), "items": []}
    status, _ = await post(http, app_intake, body)
    assert status == 422
    from tests.helpers import queue_depth

    assert await queue_depth(f"{namespace}syncer.credits") == 0


async def test_two_backends_keys_do_not_collide(http, make_intake, namespace, syncer, db) -> None:
    url = await make_intake(intake_settings(namespace, api_keys={"a": "key-a", "b": "key-b"}))
    same = notification(1, key="same-key")
    assert (await post(http, url, same, {"Authorization": "Bearer key-a"}))[1]["id"] == "a:same-key"
    assert (await post(http, url, same, {"Authorization": "Bearer key-b"}))[1]["id"] == "b:same-key"


async def test_a_known_contact_gets_balance_audit_and_push_and_learns_a_new_key(
    http, app_intake, syncer, db
) -> None:
    # First notification creates the contact without a HubSpot id.
    first = notification(1, key="k1", sj_credits=4)
    del first["contact"]["hubspotId"]
    assert (await post(http, app_intake, first))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM processed_messages"))
    # Known contact, every key known: the one-statement path (services/syncer/credits_fast.py).
    second = notification(2, key="k2", sj_credits=2)
    del second["contact"]["hubspotId"]
    assert (await post(http, app_intake, second))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM processed_messages"))
    assert await balances(db) == {"sj_credits": 2}
    contact = await db.fetchrow("SELECT * FROM contacts")
    assert contact["change_version"] == 3 and contact["hubspot_id"] is None
    audit = await db.fetch("SELECT * FROM audit_log ORDER BY entity_version")
    assert [a["entity_version"] for a in audit] == [2, 3]
    assert audit[1]["details"] == {
        "reason": "booking_created", "credits": {"sj_credits": 2}, "appVersion": 2
    }  # fmt: skip
    # HubSpot follows from the contact row itself: no outbox row, no message per change.
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    await eventually(
        lambda: db.fetchval(
            "SELECT hubspot_synced_version = 3 AND hubspot_push_due_at IS NULL FROM contacts"
        )
    )
    # A HubSpot id to learn: the transactional path fills it in.
    assert (await post(http, app_intake, notification(3, key="k3", sj_credits=1)))[0] == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 3 FROM processed_messages"))
    assert await db.fetchval("SELECT hubspot_id FROM contacts") == "90101"
    assert await balances(db) == {"sj_credits": 1}
