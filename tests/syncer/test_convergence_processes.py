"""The issue's short reproduction with real processes: a Silver and then a Gold order for
each of 60 Shopify and 30 Commerce7 customers, sent back to back while one syncer of
two is killed -9 twice. Every customer ends right at its provider, every action
``completed``; the provider calls made are printed next to the minimum."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import eventually, free_port, ready
from tests.helpers import COMMERCE7_WEBHOOK, post_commerce7, post_shopify, shopify_order
from tests.syncer.membership_helpers import add_fault, provider_requests, wrong_at_providers

SHOPIFY_CUSTOMERS = 60
COMMERCE7_CUSTOMERS = 30
ENV = {
    # Short leases so a killed holder's customers are taken over within seconds.
    "CRMSYNC_PROVIDER_LEASE_S": "4",
    "CRMSYNC_HTTP_TIMEOUT_S": "3",
    "CRMSYNC_COMMERCE7_RATE_PER_S": "100",
}


def shopify_orders(i: int) -> list[bytes]:
    customer = {"id": 60_000 + i, "email": f"s{i}@example.test"}
    return [
        shopify_order(id=70_000 + i, customer=customer, current_subtotal_price="200.00"),
        shopify_order(id=80_000 + i, customer=customer, current_subtotal_price="600.00"),
    ]


def commerce7_orders(i: int) -> list[bytes]:
    bodies = []
    for n, sub_total in ((1, 20_000), (2, 60_000)):
        webhook = json.loads(COMMERCE7_WEBHOOK)
        payload: dict[str, Any] = webhook["payload"]
        payload.update(
            id=f"c7-order-{i}-{n}",
            customerId=f"c7-customer-{i}",
            subTotal=sub_total,
            total=sub_total,
        )
        payload["customer"]["id"] = f"c7-customer-{i}"
        bodies.append(json.dumps(webhook).encode())
    return bodies


async def send_customer(http, intake: str, provider: str, bodies: list[bytes]) -> None:
    for body in bodies:  # Silver, then Gold, back to back
        for _ in range(50):
            if provider == "shopify":
                status, _, _ = await post_shopify(http, intake, body=body)
            else:
                status, _, _ = await post_commerce7(http, intake, body)
            if status == 200:
                break
            await asyncio.sleep(0.1)  # a sender retries a 503, as Shopify does
        assert status == 200


@pytest.mark.timeout(300)
async def test_kill_9_twice_during_silver_then_gold_leaves_no_customer_wrong(
    http, intake, spawn_syncer, sandbox, db
) -> None:
    survivor_port, victim_port = free_port(), free_port()
    await spawn_syncer(survivor_port, **ENV)
    victim = await spawn_syncer(victim_port, **ENV)
    for port in (survivor_port, victim_port):
        await eventually(lambda port=port: ready(http, port), timeout_s=30)
    # Slow providers a little, so the kills land while actions are in flight.
    for provider in ("shopify", "commerce7"):
        await add_fault(http, sandbox, provider=provider, latency_ms=60)

    killed_in_flight: list[int] = []

    async def holding(pid: int) -> int:
        return await db.fetchval(
            "SELECT count(*) FROM provider_actions WHERE status = 'processing'"
            " AND split_part(claimed_by, ':', 2) = $1",
            str(pid),
        )

    async def kill_twice() -> None:
        nonlocal victim
        for _ in range(2):
            # Kill while the victim holds a claimed action (mid provider call).
            pid = victim.pid
            await eventually(lambda pid=pid: holding(pid), timeout_s=60, interval_s=0.01)
            victim.kill()  # SIGKILL: unacked messages go back, leases stay until expiry
            await victim.wait()
            killed_in_flight.append(await holding(pid))
            port = free_port()
            victim = await spawn_syncer(port, **ENV)
            await eventually(lambda port=port: ready(http, port), timeout_s=30)

    senders = [
        send_customer(http, intake, "shopify", shopify_orders(i)) for i in range(SHOPIFY_CUSTOMERS)
    ] + [
        send_customer(http, intake, "commerce7", commerce7_orders(i))
        for i in range(COMMERCE7_CUSTOMERS)
    ]
    await asyncio.gather(kill_twice(), *senders)

    customers = SHOPIFY_CUSTOMERS + COMMERCE7_CUSTOMERS

    async def all_done() -> bool:
        gold = await db.fetchval(
            "SELECT count(*) FROM enrolments e JOIN tiers t ON t.id = e.tier_id"
            " WHERE e.status = 'active' AND t.name = 'Gold'"
        )
        open_actions = await db.fetchval(
            "SELECT count(*) FROM provider_actions WHERE status <> 'completed'"
        )
        return gold == customers and open_actions == 0

    await eventually(all_done, timeout_s=180, interval_s=0.5)
    assert len(killed_in_flight) == 2 and all(killed_in_flight), killed_in_flight

    assert await db.fetchval("SELECT count(*) FROM orders") == 2 * customers
    # Two per customer; one when its Gold order was handled before its Silver ("kept").
    actions = await db.fetchval("SELECT count(*) FROM provider_actions")
    assert customers <= actions <= 2 * customers
    assert await db.fetchval("SELECT count(*) FROM provider_actions WHERE status = 'failed'") == 0
    assert await wrong_at_providers(db, http, sandbox) == []
    shopify_calls = await provider_requests(http, sandbox, "shopify")
    commerce7_calls = await provider_requests(http, sandbox, "commerce7")
    shopify_reads = sum(c["method"] == "GET" for c in shopify_calls)
    commerce7_reads = sum(c["method"] == "GET" for c in commerce7_calls)
    creates = sum(c["method"] == "POST" for c in commerce7_calls)
    cancels = sum(c["method"] == "PUT" for c in commerce7_calls)
    # The least per customer: one reconcile after both orders (Shopify read + tagsAdd;
    # Commerce7 list + create + check), or one per order as each arrives (Shopify 2 + 3;
    # Commerce7 3 + 4, the Silver membership cancelled).
    print(
        f"\nprovider calls: shopify {len(shopify_calls)} (minimum {2 * SHOPIFY_CUSTOMERS},"
        f" one reconcile per order {5 * SHOPIFY_CUSTOMERS};"
        f" {shopify_reads} reads, {len(shopify_calls) - shopify_reads} tag writes),"
        f" commerce7 {len(commerce7_calls)} (minimum {3 * COMMERCE7_CUSTOMERS},"
        f" one reconcile per order {7 * COMMERCE7_CUSTOMERS};"
        f" {commerce7_reads} lists, {creates} creates, {cancels} cancels),"
        f" attempts {await db.fetchval('SELECT sum(attempts) FROM provider_actions')}"
        f" for {actions} actions; actions in flight at the kills: {killed_in_flight}"
    )
