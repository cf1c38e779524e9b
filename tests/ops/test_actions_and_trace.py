"""``crmsync actions retry`` brings a failed provider action to ``completed`` with one
effect at the sandbox; ``crmsync trace`` tells a customer's story across both paths."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

import pytest

from shared.ops.trace import trace
from tests.conftest import AMQP_URL, eventually, intake_settings
from tests.credits.test_hubspot_batch_sync import run_sync
from tests.syncer.membership_helpers import shopify_tags
from tests.syncer.test_cancellations import SHOPIFY_CUSTOMER, paid, settled

KEY = "test-booking-api-key"
EMAIL = "bob.norman@mail.example.com"  # the reference Shopify order's customer


async def crmsync(database: str, namespace: str, *args: str) -> tuple[int, str]:
    """Run ``crmsync ARGS`` as a user would, in a directory with no .env."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        env={**os.environ, "CRMSYNC_DATABASE_URL": database, "CRMSYNC_AMQP_URL": AMQP_URL,
             "CRMSYNC_AMQP_NAMESPACE": namespace},
        cwd=tempfile.mkdtemp(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def add_fault(http, sandbox: str, **fault) -> None:
    async with http.post(f"{sandbox}/_sandbox/faults", json=fault) as resp:
        assert resp.status == 201, await resp.text()


async def test_a_failed_action_retried_from_the_cli_completes_with_one_effect(
    http, intake, syncer, sandbox, db, database, namespace
) -> None:
    await add_fault(http, sandbox, provider="shopify", method="POST", status=422)
    await paid(http, intake)  # Silver
    failed = await eventually(
        lambda: db.fetchrow("SELECT * FROM provider_actions WHERE status = 'failed'"), timeout_s=15
    )
    assert "422" in failed["last_error"]
    code, out = await crmsync(database, namespace, "actions", "list", "--status", "failed")
    assert code == 0 and f"{failed['id']:>8}  failed" in out and "422" in out

    async with http.delete(f"{sandbox}/_sandbox/faults") as resp:
        assert resp.status in (200, 204)
    async with http.delete(f"{sandbox}/_sandbox/requests") as resp:
        assert resp.status in (200, 204)
    code, out = await crmsync(database, namespace, "actions", "retry", str(failed["id"]))
    assert code == 0, out
    assert "1 action(s) queued again" in out
    await eventually(lambda: settled(db, 1), timeout_s=15)
    action = await db.fetchrow("SELECT * FROM provider_actions WHERE id = $1", failed["id"])
    assert action["attempts"] == 1
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-silver"]
    # One effect: exactly one tagsAdd reached the sandbox after the retry.
    async with http.get(f"{sandbox}/_sandbox/requests") as resp:
        log = (await resp.json())["requests"]
    writes = [r for r in log if r["provider"] == "shopify" and r["method"] == "POST"]
    assert writes and all(r["status"] == 200 for r in writes)
    # Retrying it again queues nothing: it is no longer failed.
    code, out = await crmsync(database, namespace, "actions", "retry", str(failed["id"]))
    assert code == 1 and "0 action(s) queued again" in out
    assert (
        await db.fetchval("SELECT count(*) FROM outbox WHERE event_id LIKE 'provider-action-%'")
        == 2
    )


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    return await make_intake(intake_settings(namespace, api_keys={"booking-api": KEY}))


async def test_the_trace_of_a_customer_shows_order_upgrade_credits_and_batch_sync_in_order(
    http, intake, app_intake, syncer, sandbox, db, database, namespace
) -> None:
    await paid(http, intake, id=1001, current_subtotal_price="200.00")  # Silver
    await eventually(lambda: settled(db, 1))
    await paid(http, intake, id=1002, current_subtotal_price="600.00")  # Gold: an upgrade
    await eventually(lambda: settled(db, 2))
    # HubSpot refuses the write-through push, so the batch sync is what carries it.
    await add_fault(http, sandbox, provider="hubspot", status=400)
    note = {"idempotencyKey": "deduct-1", "reason": "booking_created",
            "occurredAt": "2026-11-21T10:00:00Z", "contact": {"studentId": "st-9", "email": EMAIL},
            "credits": {"sj_credits": 3}, "version": 1}  # fmt: skip
    async with http.post(f"{app_intake}/v1/events/credits", json=note,
                         headers={"Authorization": f"Bearer {KEY}"}) as resp:  # fmt: skip
        assert resp.status == 202
    await eventually(
        lambda: db.fetchval("SELECT hubspot_error IS NOT NULL FROM contacts"), timeout_s=15
    )
    async with http.delete(f"{sandbox}/_sandbox/faults") as resp:
        assert resp.status in (200, 204)
    run = await run_sync(db, database)
    assert run["status"] == "succeeded", run

    result = await trace(db, EMAIL)
    kinds = [e.kind for e in result.entries]
    times = [e.time for e in result.entries]
    assert times == sorted(times)

    def first(kind: str) -> int:
        assert kind in kinds, (kind, kinds)
        return kinds.index(kind)

    assert first("order.received") < first("enrolment.started") < first("enrolment.upgraded")
    assert first("enrolment.upgraded") < first("credits.changed") < first("run.hubspot.batch_sync")
    assert first("run.hubspot.batch_sync") < first("hubspot.pushed")
    assert kinds.count("order.received") == 2
    assert kinds.count("provider_action.completed") == 2
    upgrade = [e for e in result.entries if e.kind == "provider_action.queued"][1]
    assert upgrade.details["kind"] == "upgrade_membership"
    assert any(e.kind == "event.handled" for e in result.entries)

    # The CLI and a customer id say the same.
    customer = await db.fetchval("SELECT id FROM customers")
    code, out = await crmsync(database, namespace, "trace", str(customer), "--json")
    assert code == 0, out
    assert [e["kind"] for e in json.loads(out)["entries"]] == kinds
