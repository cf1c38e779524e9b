"""Upserts of customers and orders, by their natural keys."""

from __future__ import annotations

import asyncpg

from services.syncer.orders import CustomerData, OrderData


async def upsert_customer(conn: asyncpg.Connection, c: CustomerData) -> int:
    """Insert or update by (provider, external_id); returns the row id.

    A field the payload leaves empty never erases what we already know.
    """
    customer_id: int = await conn.fetchval(
        """
        INSERT INTO customers (provider, tenant, external_id, email, first_name, last_name, phone)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (provider, external_id) DO UPDATE SET
            tenant = EXCLUDED.tenant,
            email = COALESCE(EXCLUDED.email, customers.email),
            first_name = COALESCE(EXCLUDED.first_name, customers.first_name),
            last_name = COALESCE(EXCLUDED.last_name, customers.last_name),
            phone = COALESCE(EXCLUDED.phone, customers.phone),
            updated_at = now()
        RETURNING id
        """,
        c.provider,
        c.tenant,
        c.external_id,
        c.email,
        c.first_name,
        c.last_name,
        c.phone,
    )
    return customer_id


async def upsert_order(
    conn: asyncpg.Connection, o: OrderData, customer_id: int | None, event_id: str
) -> asyncpg.Record:
    """Insert or update by (provider, external_id), never with an older version.

    Returns the row as it stands after the write (``id``, ``paid``,
    ``membership_evaluated_at``, ...). An update whose ``source_updated_at`` is older
    than the stored one changes nothing, so a late retry of ``orders/create`` cannot
    undo ``orders/paid``.
    """
    await conn.execute(
        """
        INSERT INTO orders (provider, external_id, customer_id, order_number, financial_status,
                            currency, total_minor, qualifying_total_minor, paid,
                            source_updated_at, last_event_id, provider_context, refund_of,
                            refunded_minor)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
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
        """,
        o.provider,
        o.external_id,
        customer_id,
        o.order_number,
        o.financial_status,
        o.currency,
        o.total_minor,
        o.qualifying_total_minor,
        o.paid,
        o.source_updated_at,
        event_id,
        o.provider_context,
        o.refund_of,
        o.refunded_minor,
    )
    row = await conn.fetchrow(
        "SELECT * FROM orders WHERE provider = $1 AND external_id = $2 FOR UPDATE",
        o.provider,
        o.external_id,
    )
    assert row is not None
    return row
