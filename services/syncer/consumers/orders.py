"""``syncer.orders``: Shopify and Commerce7 order webhooks → customers, orders, tiers.

A Shopify ``refunds/create`` webhook carries a refund, not an order: its handler reads
the order as it stands now (``GET orders/{order_id}.json``, no database connection
held meanwhile) and handles that like an ``orders/updated``, so refunds arriving late,
twice or out of order all end at the order's real net amount.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.memberships import Decision, apply_order
from services.syncer.orders import OrderData, from_commerce7, from_shopify
from services.syncer.revocations import reevaluate_order
from services.syncer.store import StoredOrder, claim_and_upsert
from shared.consumer import Delivery
from shared.errors import InvalidEventError
from shared.events import CloudEvent
from shared.messages.orders import (
    SHOPIFY_ORDER_EVENT_PREFIX,
    SHOPIFY_REFUND_CREATED,
    Commerce7OrderWebhook,
    ShopifyOrder,
    ShopifyRefund,
)
from shared.queues import ORDERS

log = structlog.get_logger(__name__)


def normalise(event: CloudEvent, commerce7_currency: str) -> OrderData:
    """The event's order in one shape.

    Raises:
        InvalidEventError: unknown event type or data that does not validate.
    """
    if event.type.startswith(SHOPIFY_ORDER_EVENT_PREFIX):
        return from_shopify(event.data_as(ShopifyOrder), event.type)
    if event.type.startswith("commerce7.order."):
        return from_commerce7(event.data_as(Commerce7OrderWebhook), commerce7_currency)
    raise InvalidEventError(f"syncer.orders cannot handle {event.type}")


async def _already_handled(pool: asyncpg.Pool, event_id: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT true FROM processed_messages WHERE consumer = $1 AND event_id = $2",
            ORDERS.name,
            event_id,
        )
    )


async def handle_order(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Upsert the customer and the order; enrol / upgrade / extend on a paid order;
    revoke or move the tier an order earned once it is cancelled or refunded below it
    (``CRMSYNC_MEMBERSHIP_REVOKE_ON_REFUND``).

    Idempotent by ``event.id`` (a ``processed_messages`` row in the same
    transaction) and by the order's natural key (provider, order id): the same
    webhook three times leaves one order, one enrolment, one provider action.

    Round trips (issue 11 item 5): BEGIN, one statement that claims the message and
    upserts the customer and the order, then for a paid order one read that decides
    and one write that enrols, then COMMIT: 5 for a first paid order, 3 for a
    duplicate (``tests/syncer/test_order_statements.py`` counts them).

    Raises:
        InvalidEventError: the data does not validate (dead-lettered at once).
        ProviderRejectedError: a refunded order Shopify does not know (dead-lettered).
        ProviderUnavailableError, asyncpg.PostgresError: retried by the consumer wrapper.
    """
    revoke = deps.settings.membership_revoke_on_refund
    if event.type == SHOPIFY_REFUND_CREATED:
        refund = event.data_as(ShopifyRefund)
        if not revoke:
            log.info("refund.ignored", order_id=refund.order_ref, reason="revoke_on_refund off")
            return
        if await _already_handled(deps.pool, event.id):
            log.info("order.duplicate_ignored", order_id=refund.order_ref)
            return
        order = from_shopify(
            await deps.shopify.get_order(refund.order_id), SHOPIFY_ORDER_EVENT_PREFIX + "updated"
        )
    else:
        order = normalise(event, deps.settings.commerce7_currency)
    # Lock order: the claim, the customer, the order, then the customer's enrolment.
    async with deps.pool.acquire() as conn, conn.transaction():
        stored = await claim_and_upsert(conn, ORDERS.name, event.id, order)
        if stored is None:
            log.info("order.duplicate_ignored", order_id=order.external_id)
            return
        decision = None
        if stored.customer_id is not None:
            decision = await _decide(conn, deps, event, order, stored, stored.customer_id, revoke)
    log.info(
        "order.upserted",
        provider=order.provider,
        order_id=order.external_id,
        paid=order.paid,
        membership=decision.outcome if decision else "no_customer",
    )


async def _decide(
    conn: asyncpg.Connection,
    deps: SyncerDeps,
    event: CloudEvent,
    order: OrderData,
    row: StoredOrder,
    customer_id: int,
    revoke: bool,
) -> Decision:
    common: dict[str, Any] = {
        "customer_id": customer_id,
        "provider": order.provider,
        "max_attempts": deps.settings.action_max_attempts,
        "source": deps.settings.source,
        "correlation_id": event.correlationid,
    }
    if row.refund_of is not None:
        # A refund order: the order it refunds may no longer earn its tier.
        original = await conn.fetchval(
            "SELECT id FROM orders WHERE provider = $1 AND external_id = $2",
            order.provider,
            row.refund_of,
        )
        if not revoke or original is None:
            return Decision("none")
        return await reevaluate_order(conn, order_id=original, **common)
    decision = await apply_order(conn, order=row, provider_context=order.provider_context, **common)
    # Only an order evaluated by an earlier event can be the source of an enrolment.
    if decision.outcome == "none" and revoke and row.evaluated:
        decision = await reevaluate_order(conn, order_id=row.id, **common)
    return decision
