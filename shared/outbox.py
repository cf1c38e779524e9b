"""Transactional outbox: write events with the business rows, publish them after.

A handler calls :func:`enqueue` inside its transaction; the event is durable exactly
when the rows are. :class:`OutboxRelay` (one per syncer / scheduler replica, any
number at once: rows are claimed with ``FOR UPDATE SKIP LOCKED``) publishes due rows
with confirms and marks each row by its own result:

=========================  ===================================================
a row's publish            what the relay does with that row
=========================  ===================================================
confirmed                  ``published_at = now()``
refused (unroutable, nack) ``attempts + 1``, ``last_error``, ``next_attempt_at``
                           after exponential backoff with jitter; at
                           ``max_attempts`` parked: ``failed_at`` (see
                           :mod:`shared.outbox_failed` to list and retry)
broker away (not connected, nothing counted; the round stops and the row is
no confirm in time)        due again at the next round
=========================  ===================================================

A crash between publish and mark, or a confirm that never came, means a second
publish of the same event id, which consumers drop: at-least-once in, exactly-once
effect. A row is published at most once per attempt, whatever its neighbours do.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.events import CloudEvent
from shared.outbox_relay import OutboxRelay, OutboxRetry, Round

__all__ = ["OutboxRelay", "OutboxRetry", "Round", "enqueue", "enqueue_many"]


async def enqueue(
    conn: asyncpg.Connection, event: CloudEvent, routing_key: str | None = None
) -> None:
    """Add ``event`` to the outbox in the caller's transaction (idempotent by event id)."""
    await conn.execute(
        """
        INSERT INTO outbox (event_id, routing_key, headers, body, content_type)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING
        """,
        event.id,
        routing_key or event.type,
        event.amqp_headers(),
        event.data,
        event.datacontenttype,
    )


async def enqueue_many(conn: asyncpg.Connection, events: Sequence[CloudEvent]) -> None:
    """:func:`enqueue` for many events in one round trip (a scheduler tick of 1,000
    jobs, a bulk run's chunks)."""
    if not events:
        return
    await conn.executemany(
        """
        INSERT INTO outbox (event_id, routing_key, headers, body, content_type)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING
        """,
        [(e.id, e.type, e.amqp_headers(), e.data, e.datacontenttype) for e in events],
    )
