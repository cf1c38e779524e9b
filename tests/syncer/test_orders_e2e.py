"""Real orders end to end: intake → RabbitMQ → syncer → Postgres → sandbox."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import eventually
from tests.helpers import (
    COMMERCE7_WEBHOOK,
    commerce7_webhook,
    post_commerce7,
    post_shopify,
    shopify_order,
)

SHOPIFY_CUSTOMER = "207119551"
C7_CUSTOMER = "800c840e-2241-43de-b3ec-89e10eab135e"


async def shopify_tags(http, sandbox: str, customer_id: str) -> list[str]:
    async with http.get(f"{sandbox}/_sandbox/shopify/customers/{customer_id}") as resp:
        if resp.status != 200:
            return []
        return (await resp.json())["tags"]


async def club_memberships(http, sandbox: str, customer_id: str) -> list[dict[str, Any]]:
    async with http.get(
        f"{sandbox}/_sandbox/commerce7/testing/club-memberships", params={"customerId": customer_id}
    ) as resp:
        return (await resp.json())["clubMemberships"]


async def actions(db) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch("SELECT * FROM provider_actions ORDER BY id")]


async def all_completed(db, n: int) -> bool:
    rows = await actions(db)
    return len(rows) == n and all(r["status"] == "completed" for r in rows)


async def test_shopify_reference_order_enrols_and_tags_the_customer(
    http, intake, syncer, sandbox, db
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, _ = await post_shopify(http, intake)
    assert status == 200, body
    assert loop.time() - started < 5  # Shopify's timeout

    await eventually(lambda: all_completed(db, 1))
    customer = await db.fetchrow("SELECT * FROM customers")
    assert (customer["provider"], customer["external_id"]) == ("shopify", SHOPIFY_CUSTOMER)
    assert customer["email"] == "bob.norman@mail.example.com"
    assert (customer["first_name"], customer["last_name"]) == ("Bob", "Norman")
    assert customer["is_member"] is True
    order = await db.fetchrow("SELECT * FROM orders")
    assert order["external_id"] == "450789469"
    assert order["currency"] == "USD"
    assert order["total_minor"] == 59894  # "598.94"
    assert order["qualifying_total_minor"] == 19567  # current_subtotal_price, net of the refund
    assert order["paid"] is True  # partially_refunded still counts as paid
    enrolment = await db.fetchrow(
        "SELECT e.*, t.name FROM enrolments e JOIN tiers t ON t.id = e.tier_id"
    )
    assert enrolment["name"] == "Silver" and enrolment["status"] == "active"
    [action] = await actions(db)
    assert action["kind"] == "add_membership" and action["attempts"] == 1
    assert "crmsync-tier-silver" in await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER)


async def test_commerce7_reference_order_enrols_as_a_club_membership(
    http, intake, syncer, sandbox, db
) -> None:
    status, body, _ = await post_commerce7(http, intake)
    assert status == 200, body
    await eventually(lambda: all_completed(db, 1))
    order = await db.fetchrow("SELECT * FROM orders")
    assert order["provider"] == "commerce7" and order["qualifying_total_minor"] == 7400
    tier = await db.fetchrow(
        "SELECT t.* FROM enrolments e JOIN tiers t ON t.id = e.tier_id WHERE e.status = 'active'"
    )
    assert tier["name"] == "Bronze"
    customer = await db.fetchrow("SELECT * FROM customers")
    assert customer["email"] == "jasonandres@gmail.com" and customer["tenant"] == "testing"
    [membership] = await club_memberships(http, sandbox, C7_CUSTOMER)
    assert membership["clubId"] == tier["commerce7_club_id"]
    assert membership["cancelDate"] is None
    # The order's address and card travel with the membership, as Commerce7 requires.
    assert membership["customerCreditCardId"] == "158cacfd-3ebc-4ae5-bb1e-443217250fb8"
    ref = await db.fetchval("SELECT provider_ref FROM enrolments")
    assert ref == membership["id"]


async def test_a_bigger_order_upgrades_a_lower_tier_at_shopify(
    http, intake, syncer, sandbox, db
) -> None:
    small = shopify_order(id=1001, current_subtotal_price="60.00")
    assert (await post_shopify(http, intake, body=small))[0] == 200
    await eventually(lambda: all_completed(db, 1))
    assert "crmsync-tier-bronze" in await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER)

    assert (await post_shopify(http, intake))[0] == 200  # the reference order: Silver
    await eventually(lambda: all_completed(db, 2))
    rows = await db.fetch(
        "SELECT e.status, e.ended_at, t.name FROM enrolments e"
        " JOIN tiers t ON t.id = e.tier_id ORDER BY e.id"
    )
    assert [(r["name"], r["status"]) for r in rows] == [
        ("Bronze", "upgraded"),
        ("Silver", "active"),
    ]
    assert rows[0]["ended_at"] is not None
    assert [a["kind"] for a in await actions(db)] == ["add_membership", "upgrade_membership"]
    tags = await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER)
    assert "crmsync-tier-silver" in tags and "crmsync-tier-bronze" not in tags


async def test_a_bigger_order_upgrades_the_club_at_commerce7(
    http, intake, syncer, sandbox, db
) -> None:
    assert (await post_commerce7(http, intake))[0] == 200
    await eventually(lambda: all_completed(db, 1))
    bigger = json.loads(COMMERCE7_WEBHOOK)
    bigger["payload"].update(id="a2c1b9f0-0000-4000-8000-000000000002", subTotal=20000, total=23000)
    assert (await post_commerce7(http, intake, json.dumps(bigger).encode()))[0] == 200
    await eventually(lambda: all_completed(db, 2))
    silver = await db.fetchrow("SELECT * FROM tiers WHERE name = 'Silver'")
    memberships = await club_memberships(http, sandbox, C7_CUSTOMER)
    active = [m for m in memberships if m["cancelDate"] is None]
    cancelled = [m for m in memberships if m["cancelDate"] is not None]
    assert [m["clubId"] for m in active] == [silver["commerce7_club_id"]]
    assert len(cancelled) == 1 and cancelled[0]["cancellationReason"] == "Other"


async def test_the_same_webhook_three_times_has_one_effect(
    http, intake, syncer, sandbox, db
) -> None:
    for _ in range(3):
        assert (await post_shopify(http, intake, webhook_id="same-delivery"))[0] == 200
    await eventually(lambda: all_completed(db, 1))
    await asyncio.sleep(0.5)  # let any duplicate finish, so a second row could show
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert await db.fetchval("SELECT count(*) FROM enrolments") == 1
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == 1
    assert await db.fetchval("SELECT count(*) FROM processed_messages") == 1


async def test_create_then_paid_for_one_order_enrols_once(
    http, intake, syncer, sandbox, db
) -> None:
    assert (await post_shopify(http, intake, topic="orders/create"))[0] == 200
    assert (await post_shopify(http, intake, topic="orders/paid"))[0] == 200
    await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM processed_messages"))
    await eventually(lambda: all_completed(db, 1))
    assert await db.fetchval("SELECT count(*) FROM enrolments") == 1
    expires = await db.fetchval("SELECT expires_at - started_at FROM enrolments")
    assert expires.days == 365  # not extended twice by the same order


async def test_an_unpaid_order_is_recorded_but_enrols_nobody(http, intake, syncer, db) -> None:
    pending = shopify_order(financial_status="pending")
    assert (await post_shopify(http, intake, body=pending, topic="orders/create"))[0] == 200
    await eventually(lambda: db.fetchval("SELECT count(*) FROM orders"))
    assert await db.fetchval("SELECT paid FROM orders") is False
    assert await db.fetchval("SELECT count(*) FROM enrolments") == 0


async def test_a_same_tier_order_extends_the_enrolment(http, intake, syncer, db) -> None:
    assert (await post_commerce7(http, intake))[0] == 200
    await eventually(lambda: all_completed(db, 1))
    await db.execute("UPDATE enrolments SET expires_at = now() + interval '10 days'")
    again = commerce7_webhook(id="b1b1b1b1-0000-4000-8000-000000000003")
    assert (await post_commerce7(http, intake, again))[0] == 200
    await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM orders"))
    await eventually(
        lambda: db.fetchval("SELECT expires_at > now() + interval '300 days' FROM enrolments")
    )
    assert await db.fetchval("SELECT count(*) FROM enrolments") == 1
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == 1
