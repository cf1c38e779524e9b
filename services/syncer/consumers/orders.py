"""``syncer.orders``: Shopify and Commerce7 order webhooks → customers, orders, tiers."""

from __future__ import annotations

import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.memberships import apply_order
from services.syncer.orders import OrderData, from_commerce7, from_shopify
from services.syncer.store import upsert_customer, upsert_order
from shared.consumer import Delivery
from shared.db import claim_message
from shared.errors import InvalidEventError
from shared.events import CloudEvent
from shared.messages.orders import Commerce7OrderWebhook, ShopifyOrder
from shared.queues import ORDERS

log = structlog.get_logger(__name__)


def normalise(event: CloudEvent, commerce7_currency: str) -> OrderData:
    """The event's order in one shape.

    Raises:
        InvalidEventError: unknown event type or data that does not validate.
    """
    if event.type.startswith("shopify.orders."):
        return from_shopify(event.data_as(ShopifyOrder), event.type)
    if event.type.startswith("commerce7.order."):
        return from_commerce7(event.data_as(Commerce7OrderWebhook), commerce7_currency)
    raise InvalidEventError(f"syncer.orders cannot handle {event.type}")


async def handle_order(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Upsert the customer and the order; enrol / upgrade / extend on a paid order.

    Idempotent by ``event.id`` (a ``processed_messages`` row in the same
    transaction) and by the order's natural key (provider, order id): the same
    webhook three times leaves one order, one enrolment, one provider action.

    Raises:
        InvalidEventError: the data does not validate (dead-lettered at once).
        asyncpg.PostgresError: retried by the consumer wrapper.
    """
    order = normalise(event, deps.settings.commerce7_currency)
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, ORDERS.name, event.id):
            log.info("order.duplicate_ignored", order_id=order.external_id)
            return
        customer_id = await upsert_customer(conn, order.customer) if order.customer else None
        row = await upsert_order(conn, order, customer_id, event.id)
        decision = None
        if customer_id is not None:
            decision = await apply_order(
                conn,
                order=row,
                customer_id=customer_id,
                provider=order.provider,
                provider_context=order.provider_context,
                max_attempts=deps.settings.action_max_attempts,
                source=deps.settings.source,
                correlation_id=event.correlationid,
            )
    log.info(
        "order.upserted",
        provider=order.provider,
        order_id=order.external_id,
        paid=order.paid,
        membership=decision.outcome if decision else "no_customer",
    )
