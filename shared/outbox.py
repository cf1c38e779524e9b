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
from typing import Any

import asyncpg

from shared.events import HEADER_PREFIX, CloudEvent
from shared.outbox_relay import OutboxRelay, OutboxRetry, Round

__all__ = [
    "CORRELATION_HEADER",
    "ID_HEADER",
    "SUBJECT_HEADER",
    "OutboxRelay",
    "OutboxRetry",
    "Round",
    "enqueue",
    "enqueue_many",
    "headers_but_ids",
]

# The headers an outbox row written in SQL gets from the SQL (its id is known only there).
ID_HEADER = f"{HEADER_PREFIX}id"
SUBJECT_HEADER = f"{HEADER_PREFIX}subject"
CORRELATION_HEADER = f"{HEADER_PREFIX}correlationid"


def headers_but_ids(*, type: str, source: str, correlationid: str | None) -> dict[str, Any]:
    """The ``amqp_headers()`` of an event whose id only the SQL that writes its outbox
    row knows, less :data:`ID_HEADER` and :data:`SUBJECT_HEADER`, and less
    :data:`CORRELATION_HEADER` when ``correlationid`` is None: the SQL then sets it to
    the event's id, as :meth:`CloudEvent.create` does (``credits_fast``,
    ``credits_bulk``, ``enrolment_changes``)."""
    headers = CloudEvent.create(
        id="-", type=type, source=source, subject="-", correlationid=correlationid, data=b""
    ).amqp_headers()
    del headers[ID_HEADER], headers[SUBJECT_HEADER]
    if correlationid is None:
        del headers[CORRELATION_HEADER]
    return headers


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
