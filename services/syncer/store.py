"""The order handler's first statement: claim the message, upsert the customer and
the order, by their natural keys (issue 11 item 5: these were four round trips)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.syncer.orders import OrderData

# $1 consumer, $2 event id; the customer: $3 provider, $4 tenant, $5 external id (NULL:
# the order has none), $6 email, $7 first name, $8 last name, $9 phone; the order: $10
# external id, $11 number, $12 financial status, $13 currency, $14 total, $15
# qualifying total, $16 paid, $17 source_updated_at, $18 provider context, $19 the
# order it refunds, $20 the amount refunded. Each CTE reads the one before, so the
# rows are written (and locked) in the handler's lock order: claim, customer, order.
# A customer field the payload leaves empty never erases what we know. An order update
# older than the stored row (``source_updated_at``) changes nothing, so a late retry of
# orders/create cannot undo orders/paid; it returns no row but still locks it (ON
# CONFLICT DO UPDATE locks the row whatever its WHERE says).
CLAIM_AND_UPSERT_SQL = """
WITH claim AS (
    INSERT INTO processed_messages (consumer, event_id) VALUES ($1::text, $2::text)
    ON CONFLICT DO NOTHING RETURNING true AS claimed
), customer AS (
    INSERT INTO customers (provider, tenant, external_id, email, first_name, last_name, phone)
    SELECT $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text
    FROM claim WHERE $5::text IS NOT NULL
    ON CONFLICT (provider, external_id) DO UPDATE SET
        tenant = EXCLUDED.tenant,
        email = COALESCE(EXCLUDED.email, customers.email),
        first_name = COALESCE(EXCLUDED.first_name, customers.first_name),
        last_name = COALESCE(EXCLUDED.last_name, customers.last_name),
        phone = COALESCE(EXCLUDED.phone, customers.phone),
        updated_at = now()
    RETURNING id
), upserted AS (
    INSERT INTO orders (provider, external_id, customer_id, order_number, financial_status,
                        currency, total_minor, qualifying_total_minor, paid,
                        source_updated_at, last_event_id, provider_context, refund_of,
                        refunded_minor)
    SELECT $3::text, $10::text, customer.id, $11::text, $12::text, $13::text, $14::bigint,
           $15::bigint, $16::boolean, $17::timestamptz, $2::text, $18::jsonb, $19::text,
           $20::bigint
    FROM claim LEFT JOIN customer ON true
    ON CONFLICT (provider, external_id) DO UPDATE SET
        customer_id = COALESCE(EXCLUDED.customer_id, orders.customer_id),
        order_number = EXCLUDED.order_number,
        financial_status = EXCLUDED.financial_status,
        currency = EXCLUDED.currency,
        total_minor = EXCLUDED.total_minor,
        qualifying_total_minor = EXCLUDED.qualifying_total_minor,
        paid = EXCLUDED.paid,
        source_updated_at = EXCLUDED.source_updated_at,
        last_event_id = EXCLUDED.last_event_id,
        provider_context = EXCLUDED.provider_context,
        refund_of = EXCLUDED.refund_of,
        refunded_minor = EXCLUDED.refunded_minor,
        updated_at = now()
    WHERE orders.source_updated_at IS NULL
       OR EXCLUDED.source_updated_at IS NULL
       OR EXCLUDED.source_updated_at >= orders.source_updated_at
    RETURNING id, paid, membership_evaluated_at IS NOT NULL AS evaluated, refund_of
)
SELECT (SELECT id FROM customer) AS customer_id, upserted.id, upserted.paid,
       upserted.evaluated, upserted.refund_of
FROM claim LEFT JOIN upserted ON true
"""


@dataclass(frozen=True)
class StoredOrder:
    """The order row after the upsert, as far as the membership decision reads it.

    Attributes:
        id: ``orders.id``.
        paid: the order qualifies for a tier by its status.
        evaluated: ``membership_evaluated_at`` was set before (by an earlier event).
        refund_of: the external id of the order a refund order refunds, or None.
        customer_id: the customer this event upserted (None: the order names none).
    """

    id: int
    paid: bool
    evaluated: bool
    refund_of: str | None
    customer_id: int | None


async def claim_and_upsert(
    conn: asyncpg.Connection, consumer: str, event_id: str, o: OrderData
) -> StoredOrder | None:
    """Claim ``event_id`` for ``consumer`` and upsert the order's customer and the
    order, in one statement of the caller's transaction; None if the message was
    claimed before (nothing written).

    The claim is :func:`shared.db.claim_message`'s: a concurrent duplicate waits on
    the claim's key until the first transaction ends, then writes nothing. The order
    row is then locked until the caller's transaction ends, and so is the customer's
    (``FOR NO KEY UPDATE``, which every ``FOR UPDATE`` or ``UPDATE`` of it waits for).
    An order update older than the stored row changes nothing; the stored row is read.
    """
    c = o.customer
    row = await conn.fetchrow(
        CLAIM_AND_UPSERT_SQL,
        consumer,
        event_id,
        o.provider,
        c.tenant if c else None,
        c.external_id if c else None,
        c.email if c else None,
        c.first_name if c else None,
        c.last_name if c else None,
        c.phone if c else None,
        o.external_id,
        o.order_number,
        o.financial_status,
        o.currency,
        o.total_minor,
        o.qualifying_total_minor,
        o.paid,
        o.source_updated_at,
        o.provider_context,
        o.refund_of,
        o.refunded_minor,
    )
    if row is None:
        return None
    if row["id"] is None:  # an older version: the update was guarded off
        row = await conn.fetchrow(
            """
            SELECT $3::bigint AS customer_id, id, paid,
                   membership_evaluated_at IS NOT NULL AS evaluated, refund_of
            FROM orders WHERE provider = $1 AND external_id = $2 FOR UPDATE
            """,
            o.provider,
            o.external_id,
            row["customer_id"],
        )
        assert row is not None
    return StoredOrder(
        id=row["id"],
        paid=row["paid"],
        evaluated=row["evaluated"],
        refund_of=row["refund_of"],
        customer_id=row["customer_id"],
    )
