"""asyncpg pool and the idempotency claim every transactional handler makes."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    """An asyncpg pool with JSON codecs set up.

    Args:
        dsn: ``postgresql://user@host:5432/db``.
        min_size: connections kept open.
        max_size: connections at most; bound it below Postgres' ``max_connections``
            divided by the number of replicas.
    """
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, **kwargs
    )
    assert pool is not None
    return pool


async def claim_message(conn: asyncpg.Connection, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handled ``event_id``; False if it already had.

    Call inside the handler's own transaction, before its writes: the row commits
    with them or not at all, so a redelivered message is recognised exactly when its
    effects are already durable. A concurrent duplicate blocks on the primary key
    until the first transaction ends, then sees the conflict.
    """
    inserted = await conn.fetchval(
        """
        INSERT INTO processed_messages (consumer, event_id) VALUES ($1, $2)
        ON CONFLICT DO NOTHING RETURNING true
        """,
        consumer,
        event_id,
    )
    return bool(inserted)
