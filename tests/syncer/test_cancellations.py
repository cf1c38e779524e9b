"""Cancelled and refunded orders revoke or move the tier they earned, and the provider
converges: intake → RabbitMQ → syncer → Postgres → sandbox, with the providers' own
payload shapes (reference/shopify, reference/commerce7)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.conftest import FIXTURES, eventually, syncer_settings
from tests.helpers import COMMERCE7_WEBHOOK, SHOPIFY_ORDER, post_commerce7, post_shopify
from tests.syncer.membership_helpers import active, memberships, shopify_tags, wrong_at_providers

SHOPIFY_CUSTOMER = "207119551"
C7_CUSTOMER = "800c840e-2241-43de-b3ec-89e10eab135e"
LATER = "2008-01-12T11:00:00-05:00"
# The Refund resource as Shopify's REST reference shows it inside the order; a
# refunds/create webhook body is this object, bare (WEBHOOKS.md §1).
REFUND = json.loads((FIXTURES / "shopify_order_get_450789469.response.json").read_text())["order"][
    "refunds"
][0]


def order(**changes: Any) -> dict[str, Any]:
    body = json.loads(SHOPIFY_ORDER)
    body.update(changes)
    return body


def refund_of(order_id: int) -> bytes:
    return json.dumps({**REFUND, "order_id": order_id}).encode()


async def seed_order(http, sandbox: str, body: dict[str, Any]) -> None:
    async with http.post(f"{sandbox}/_sandbox/shopify/orders", json=body) as resp:
        assert resp.status == 201, await resp.text()


async def settled(db, n: int) -> bool:
    return await db.fetchval(
        "SELECT count(*) = $1 AND bool_and(status = 'completed') FROM provider_actions", n
    )


async def handled(db, n: int) -> bool:
    return await db.fetchval("SELECT count(*) = $1 FROM processed_messages", n)


async def tiers_by_status(db) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT t.name, e.status FROM enrolments e JOIN tiers t ON t.id = e.tier_id ORDER BY e.id"
    )
    return [(r["name"], r["status"]) for r in rows]


async def paid(http, intake: str, **changes: Any) -> None:
    status, body, _ = await post_shopify(http, intake, body=json.dumps(order(**changes)).encode())
    assert status == 200, body


async def test_a_cancelled_shopify_order_revokes_its_tier_and_removes_the_tag(
    http, intake, syncer, sandbox, db
) -> None:
    await paid(http, intake)  # the reference order: Silver
    await eventually(lambda: settled(db, 1))
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-silver"]

    cancelled = order(
        cancelled_at=LATER, cancel_reason="customer", financial_status="voided", updated_at=LATER
    )
    status, _, _ = await post_shopify(
        http, intake, body=json.dumps(cancelled).encode(), topic="orders/cancelled"
    )
    assert status == 200

    await eventually(lambda: settled(db, 2))
    assert await tiers_by_status(db) == [("Silver", "revoked")]
    assert await db.fetchval("SELECT is_member FROM customers") is False
    kinds = await db.fetch("SELECT kind FROM provider_actions ORDER BY id")
    assert [r["kind"] for r in kinds] == ["add_membership", "cancel_membership"]
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == []


async def test_a_refund_below_gold_moves_the_customer_down_to_silver(
    http, intake, syncer, sandbox, db
) -> None:
    await paid(http, intake, id=1001, current_subtotal_price="200.00")  # Silver
    await eventually(lambda: settled(db, 1))
    await paid(http, intake, id=1002, current_subtotal_price="600.00")  # Gold
    await eventually(lambda: settled(db, 2))
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-gold"]
    # Shopify now has order 1002 net of a 500.00 refund; the webhook names only the refund.
    refunded = order(
        id=1002,
        current_subtotal_price="100.00",
        financial_status="partially_refunded",
        updated_at=LATER,
    )
    await seed_order(http, sandbox, {"order": refunded})
    status, _, _ = await post_shopify(http, intake, body=refund_of(1002), topic="refunds/create")
    assert status == 200

    await eventually(lambda: settled(db, 3))
    assert await tiers_by_status(db) == [
        ("Silver", "upgraded"),
        ("Gold", "revoked"),
        ("Silver", "active"),
    ]
    source = await db.fetchval(
        "SELECT o.external_id FROM enrolments e JOIN orders o ON o.id = e.source_order_id"
        " WHERE e.status = 'active'"
    )
    assert source == "1001"
    net = await db.fetchval("SELECT qualifying_total_minor FROM orders WHERE external_id = '1002'")
    assert net == 10_000
    [downgrade] = await db.fetch("SELECT * FROM provider_actions WHERE id = 3")
    assert downgrade["kind"] == "downgrade_membership"
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-silver"]


async def test_a_refund_that_stays_above_the_tier_keeps_it(
    http, intake, syncer, sandbox, db
) -> None:
    await paid(http, intake, id=1002, current_subtotal_price="600.00")
    await eventually(lambda: settled(db, 1))
    await seed_order(
        http,
        sandbox,
        order(id=1002, current_subtotal_price="550.00", updated_at=LATER),
    )
    assert (await post_shopify(http, intake, body=refund_of(1002), topic="refunds/create"))[
        0
    ] == 200

    await eventually(lambda: handled(db, 2))
    assert await db.fetchval("SELECT qualifying_total_minor FROM orders") == 55_000
    assert await tiers_by_status(db) == [("Gold", "active")]
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == 1
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-gold"]


async def test_a_refund_that_arrives_before_its_order_enrols_at_the_net_amount(
    http, intake, syncer, sandbox, db
) -> None:
    # Refunded from 600.00 to 200.00 before we ever saw orders/paid (webhooks reorder).
    await seed_order(
        http, sandbox, order(id=1002, current_subtotal_price="200.00", updated_at=LATER)
    )
    assert (await post_shopify(http, intake, body=refund_of(1002), topic="refunds/create"))[
        0
    ] == 200
    await eventually(lambda: settled(db, 1))
    await paid(http, intake, id=1002, current_subtotal_price="600.00")  # older, late
    await eventually(lambda: handled(db, 2))
    assert await tiers_by_status(db) == [("Silver", "active")]
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-silver"]


async def test_the_same_refund_webhook_twice_has_one_effect(
    http, intake, syncer, sandbox, db
) -> None:
    await paid(http, intake, id=1002, current_subtotal_price="600.00")
    await eventually(lambda: settled(db, 1))
    await seed_order(
        http, sandbox, order(id=1002, current_subtotal_price="10.00", updated_at=LATER)
    )
    for _ in range(2):
        status, _, _ = await post_shopify(
            http, intake, body=refund_of(1002), topic="refunds/create", webhook_id="refund-1"
        )
        assert status == 200
    await eventually(lambda: settled(db, 2))
    assert await tiers_by_status(db) == [("Gold", "revoked")]
    assert await db.fetchval("SELECT count(*) FROM processed_messages") == 2
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == []


async def test_with_revocation_turned_off_cancellations_keep_the_tier(
    http, intake, make_syncer, database, namespace, sandbox, db
) -> None:
    await make_syncer(
        syncer_settings(database, namespace, sandbox, membership_revoke_on_refund=False)
    )
    await paid(http, intake)
    await eventually(lambda: settled(db, 1))
    cancelled = order(cancelled_at=LATER, financial_status="voided", updated_at=LATER)
    body = json.dumps(cancelled).encode()
    assert (await post_shopify(http, intake, body=body, topic="orders/cancelled"))[0] == 200
    assert (await post_shopify(http, intake, body=refund_of(450789469), topic="refunds/create"))[
        0
    ] == 200
    await eventually(lambda: handled(db, 2))  # the refund is acknowledged, not recorded
    assert await db.fetchval("SELECT paid FROM orders") is False
    assert await tiers_by_status(db) == [("Silver", "active")]
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["crmsync-tier-silver"]


def commerce7(**payload: Any) -> bytes:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    action = payload.pop("action", "Create")
    webhook["action"] = action
    webhook["payload"].update(payload)
    return json.dumps(webhook).encode()


async def test_a_commerce7_order_update_to_refunded_cancels_the_membership(
    http, intake, syncer, sandbox, db
) -> None:
    assert (await post_commerce7(http, intake))[0] == 200  # Bronze
    await eventually(lambda: settled(db, 1))
    assert len(active(await memberships(http, sandbox, C7_CUSTOMER))) == 1
    update = commerce7(action="Update", paymentStatus="Refunded", updatedAt="2024-08-02T10:00:00Z")
    assert (await post_commerce7(http, intake, update))[0] == 200

    await eventually(lambda: settled(db, 2))
    assert await tiers_by_status(db) == [("Bronze", "revoked")]
    [membership] = await memberships(http, sandbox, C7_CUSTOMER)
    assert membership["cancelDate"] is not None and membership["cancellationReason"] == "Other"
    assert await wrong_at_providers(db, http, sandbox) == []


async def test_a_commerce7_refund_order_moves_the_club_down(
    http, intake, syncer, sandbox, db
) -> None:
    original = "a2c1b9f0-0000-4000-8000-000000000010"
    assert (await post_commerce7(http, intake, commerce7(id=original, subTotal=20_000)))[0] == 200
    await eventually(lambda: settled(db, 1))
    refund = commerce7(
        id="a2c1b9f0-0000-4000-8000-000000000011",
        purchaseType="Refund",
        previousOrderId=original,
        subTotal=-12_000,
        total=-12_000,
        updatedAt="2024-08-02T10:00:00Z",
    )
    assert (await post_commerce7(http, intake, refund))[0] == 200

    await eventually(lambda: settled(db, 2))
    assert await tiers_by_status(db) == [("Silver", "revoked"), ("Bronze", "active")]
    bronze = await db.fetchval("SELECT commerce7_club_id FROM tiers WHERE name = 'Bronze'")
    [kept] = active(await memberships(http, sandbox, C7_CUSTOMER))
    assert kept["clubId"] == bronze
    assert kept["customerCreditCardId"] == "158cacfd-3ebc-4ae5-bb1e-443217250fb8"
    assert await wrong_at_providers(db, http, sandbox) == []


async def test_a_eur_ladder_lives_beside_the_usd_one(http, intake, syncer, sandbox, db) -> None:
    await db.execute(
        """
        INSERT INTO tiers (name, rank, qualifying_total_minor, currency, duration_days,
                           shopify_tag, commerce7_club_id)
        VALUES ('Bronze', 1, 4000, 'EUR', 365, 'crmsync-eur-bronze', 'eur-club-1'),
               ('Silver', 2, 12000, 'EUR', 365, 'crmsync-eur-silver', 'eur-club-2'),
               ('Gold', 3, 40000, 'EUR', 365, 'crmsync-eur-gold', 'eur-club-3')
        """
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            "INSERT INTO tiers (name, rank, qualifying_total_minor, currency, duration_days,"
            " shopify_tag, commerce7_club_id) VALUES ('Platinum', 2, 1, 'EUR', 1, 'x', 'y')"
        )
    # A leftover USD tag is crmsync's too: a EUR Silver customer keeps only its EUR tag.
    async with http.post(
        f"{sandbox}/_sandbox/shopify/customers",
        json={"id": int(SHOPIFY_CUSTOMER), "tags": ["crmsync-tier-gold", "VIP"]},
    ) as resp:
        assert resp.status == 201
    await paid(http, intake, currency="EUR", current_subtotal_price="130.00")
    await eventually(lambda: settled(db, 1))
    tier = await db.fetchrow(
        "SELECT t.* FROM enrolments e JOIN tiers t ON t.id = e.tier_id WHERE e.status = 'active'"
    )
    assert (tier["name"], tier["currency"]) == ("Silver", "EUR")
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == ["VIP", "crmsync-eur-silver"]
    assert await db.fetchval("SELECT count(*) FROM tiers WHERE currency = 'USD'") == 3
