"""Provider actions converge to Postgres: order, duplicates, races and crashes all end
in the same provider state (real Postgres, RabbitMQ and the sandbox)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from services.syncer.consumers.membership_actions import Claim, claim, handle_membership_action
from services.syncer.consumers.orders import handle_order
from services.syncer.desired import read_desired
from services.syncer.providers import converge_commerce7, converge_shopify
from shared.broker import Broker
from shared.events import CloudEvent
from shared.queues import MEMBERSHIP_ACTIONS, ORDERS
from shared.topology import Topology
from tests.conftest import AMQP_URL, eventually, syncer_settings
from tests.helpers import (
    COMMERCE7_WEBHOOK,
    post_commerce7,
    post_shopify,
    queue_depth,
    shopify_order,
)
from tests.syncer.membership_helpers import (
    action_event,
    active,
    add_fault,
    delivery,
    direct_deps,
    memberships,
    provider_requests,
    shopify_tags,
    wrong_at_providers,
)

SHOPIFY_CUSTOMER = "207119551"
C7_CUSTOMER = "800c840e-2241-43de-b3ec-89e10eab135e"
SILVER_TAG, GOLD_TAG = "crmsync-tier-silver", "crmsync-tier-gold"


def shopify_event(body: bytes) -> CloudEvent:
    return CloudEvent.create(
        id=str(uuid.uuid4()), type="shopify.orders.paid", source="urn:test", data=body
    )


def commerce7_event(order_id: str, sub_total: int) -> CloudEvent:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    webhook["payload"].update(id=order_id, subTotal=sub_total, total=sub_total)
    return CloudEvent.create(
        id=str(uuid.uuid4()),
        type="commerce7.order.create",
        source="urn:test",
        data=json.dumps(webhook).encode(),
    )


async def silver_then_gold(deps: Any, provider: str) -> list[dict[str, Any]]:
    """Two paid orders of one customer, handled (no action run yet): add, then upgrade."""
    settings = deps.settings
    order_delivery = delivery(settings, provider, settings.amqp_namespace)
    if provider == "shopify":
        events = [
            shopify_event(shopify_order(id=1, current_subtotal_price="200.00")),
            shopify_event(shopify_order(id=2, current_subtotal_price="600.00")),
        ]
    else:
        events = [commerce7_event("c7-order-1", 20_000), commerce7_event("c7-order-2", 60_000)]
    for event in events:
        await handle_order(event, order_delivery, deps)
    rows = await deps.pool.fetch("SELECT * FROM provider_actions ORDER BY id")
    assert [r["kind"] for r in rows] == ["add_membership", "upgrade_membership"]
    assert [r["membership_version"] for r in rows] == [1, 2]
    return [dict(r) for r in rows]


async def run(deps: Any, action: dict[str, Any], attempt: int = 1) -> None:
    settings = deps.settings
    await handle_membership_action(
        action_event(action["id"], action["provider"], action["kind"]),
        delivery(settings, action["provider"], settings.amqp_namespace, attempt),
        deps,
    )


async def statuses(db) -> list[str]:
    return [r["status"] for r in await db.fetch("SELECT status FROM provider_actions ORDER BY id")]


async def test_an_upgrade_run_before_its_add_leaves_only_the_new_tag_at_shopify(
    database, namespace, sandbox, http, db
) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        add, upgrade = await silver_then_gold(deps, "shopify")
        await run(deps, upgrade)  # the upgrade's message comes first
        assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]
        # Version 2 covers the add: both are complete, the add's message changes nothing.
        assert await statuses(db) == ["completed", "completed"]
        await run(deps, add)
        # Even run again from scratch (a stale add), it only reads and writes nothing.
        await db.execute("UPDATE provider_actions SET status = 'pending' WHERE id = $1", add["id"])
        before = len(await provider_requests(http, sandbox, "shopify"))
        await run(deps, add)
        calls = (await provider_requests(http, sandbox, "shopify"))[before:]
    assert [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in calls] == [
        ("GET", f"{SHOPIFY_CUSTOMER}.json")
    ]
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]
    assert await wrong_at_providers(db, http, sandbox) == []


async def test_an_upgrade_run_before_its_add_leaves_one_membership_at_commerce7(
    database, namespace, sandbox, http, db
) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        add, upgrade = await silver_then_gold(deps, "commerce7")
        await run(deps, upgrade)
        await db.execute("UPDATE provider_actions SET status = 'pending' WHERE id = $1", add["id"])
        await run(deps, add)
    gold = await db.fetchrow("SELECT * FROM tiers WHERE name = 'Gold'")
    [membership] = await memberships(http, sandbox, C7_CUSTOMER)  # never a Silver one
    assert membership["clubId"] == gold["commerce7_club_id"] and membership["cancelDate"] is None
    assert await statuses(db) == ["completed", "completed"]
    refs = await db.fetch("SELECT status, provider_ref FROM enrolments ORDER BY id")
    assert [(r["status"], r["provider_ref"]) for r in refs] == [
        ("upgraded", None),
        ("active", membership["id"]),
    ]


async def test_two_commerce7_creates_racing_end_with_one_active_membership(
    database, namespace, sandbox, http, db
) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        await handle_order(
            commerce7_event("c7-order-1", 60_000),
            delivery(deps.settings, "commerce7", namespace),
            deps,
        )
        customer_id = await db.fetchval("SELECT id FROM customers")
        async with db.acquire() as conn:
            desired = await read_desired(conn, customer_id)
        # Both list (nothing there), both create while the other's create is in flight.
        await add_fault(
            http, sandbox, provider="commerce7", method="POST", path="club-membership",
            latency_ms=300,
        )  # fmt: skip
        results = await asyncio.gather(
            converge_commerce7(deps.commerce7, desired, "Other"),
            converge_commerce7(deps.commerce7, desired, "Other"),
        )
        found = await memberships(http, sandbox, C7_CUSTOMER)
        assert len(found) == 2  # the race happened: two creates
        [kept] = active(found)
        assert kept["clubId"] == desired.club_id
        assert {r.provider_ref for r in results} == {kept["id"]}
        # A third reconcile finds it right and writes nothing.
        third = await converge_commerce7(deps.commerce7, desired, "Other")
    assert third.changes == [] and third.calls == 1
    assert len(active(await memberships(http, sandbox, C7_CUSTOMER))) == 1


async def test_two_shopify_reconciles_at_once_agree(database, namespace, sandbox, http, db) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        await silver_then_gold(deps, "shopify")
        customer_id = await db.fetchval("SELECT id FROM customers")
        async with db.acquire() as conn:
            desired = await read_desired(conn, customer_id)
        await add_fault(http, sandbox, provider="shopify", method="POST", latency_ms=200)
        await asyncio.gather(*(converge_shopify(deps.shopify, desired) for _ in range(3)))
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]


async def test_other_tags_and_clubs_are_never_touched(
    database, namespace, sandbox, http, db
) -> None:
    async with http.post(
        f"{sandbox}/_sandbox/shopify/customers",
        json={"id": int(SHOPIFY_CUSTOMER), "tags": ["VIP", "Crmsync-Tier-Bronze", "wholesale"]},
    ) as resp:
        assert resp.status == 201
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        add, _ = await silver_then_gold(deps, "shopify")
        await run(deps, add)
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["VIP", "wholesale", GOLD_TAG]


async def test_a_crash_between_the_provider_calls_and_the_completion_converges(
    database, namespace, sandbox, http, db
) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        add, upgrade = await silver_then_gold(deps, "shopify")
        # A replica claims the add with a 1.5 s lease, calls Shopify, then dies.
        crashed = await claim(db, add["id"], 1.5)
        assert isinstance(crashed, Claim)
        await converge_shopify(deps.shopify, crashed.desired)
        assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]
        before = len(await provider_requests(http, sandbox, "shopify"))
        # Its message is redelivered at once: the lease is still held, so it waits.
        await run(deps, add)
        assert await statuses(db) == ["processing", "pending"]
        await asyncio.sleep(1.6)
        await run(deps, add)
        calls = (await provider_requests(http, sandbox, "shopify"))[before:]
        await run(deps, upgrade)  # covered by the takeover's reconcile: nothing to do
    assert [c["method"] for c in calls] == ["GET"]  # it was right already: no write
    assert await statuses(db) == ["completed", "completed"]
    attempts = await db.fetch("SELECT attempts FROM provider_actions ORDER BY id")
    assert [r["attempts"] for r in attempts] == [2, 0]
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]


async def test_every_action_message_redelivered_changes_nothing(
    http, intake, syncer, sandbox, db, namespace
) -> None:
    gold = shopify_order(id=2, current_subtotal_price="600.00")
    assert (await post_shopify(http, intake))[0] == 200
    assert (await post_shopify(http, intake, body=gold))[0] == 200
    assert (await post_commerce7(http, intake))[0] == 200
    bigger = json.loads(COMMERCE7_WEBHOOK)
    bigger["payload"].update(id="c7-order-2", subTotal=60_000, total=60_000)
    assert (await post_commerce7(http, intake, json.dumps(bigger).encode()))[0] == 200

    async def settled() -> bool:
        # Four orders handled (in any order: a Gold handled first makes Silver "kept").
        handled = await db.fetchval("SELECT count(*) = 4 FROM processed_messages")
        return handled and await db.fetchval(
            "SELECT bool_and(status = 'completed') FROM provider_actions"
        )

    await eventually(settled, timeout_s=15)
    calls = len(await provider_requests(http, sandbox, "shopify")) + len(
        await provider_requests(http, sandbox, "commerce7")
    )
    rows = await db.fetch("SELECT * FROM provider_actions ORDER BY id")
    broker = Broker(AMQP_URL, Topology(namespace), [ORDERS, *MEMBERSHIP_ACTIONS.values()])
    try:
        await broker.wait_ready()
        for _ in range(2):
            for row in rows:
                await broker.publish(action_event(row["id"], row["provider"], row["kind"]))
    finally:
        await broker.close()
    for spec in MEMBERSHIP_ACTIONS.values():
        await eventually(lambda spec=spec: _empty(f"{namespace}{spec.name}"))
    await asyncio.sleep(0.5)
    again = len(await provider_requests(http, sandbox, "shopify")) + len(
        await provider_requests(http, sandbox, "commerce7")
    )
    assert again == calls
    assert await wrong_at_providers(db, http, sandbox) == []
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]
    assert len(active(await memberships(http, sandbox, C7_CUSTOMER))) == 1


async def _empty(queue: str) -> bool:
    return await queue_depth(queue) == 0


@pytest.mark.parametrize("provider", ["shopify", "commerce7"])
async def test_a_transient_failure_is_retried_and_the_action_completes(
    provider, database, namespace, sandbox, http, db
) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        add, _ = await silver_then_gold(deps, provider)
        await add_fault(http, sandbox, provider=provider, status=503, count=1)
        with pytest.raises(Exception, match="503"):
            await run(deps, add)
        row = await db.fetchrow("SELECT * FROM provider_actions WHERE id = $1", add["id"])
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert "503" in row["last_error"] and row["next_retry_at"] is not None
        assert await db.fetchval("SELECT count(*) FROM provider_leases") == 0
        await run(deps, add, attempt=2)
    assert await statuses(db) == ["completed", "completed"]
    assert await wrong_at_providers(db, http, sandbox) == []
