"""Outbox rows that did not get through: list them, count them, retry them.

A row RabbitMQ keeps refusing (unroutable: no queue bound for its routing key; nacked)
is retried with backoff by the relay and, after ``CRMSYNC_OUTBOX_MAX_ATTEMPTS``, parked
with ``failed_at`` and ``last_error``. It stays in the table (pruning skips it) until
:func:`retry_failed` hands it back to the relay. ``crmsync outbox list`` / ``retry``
and the admin tooling call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

RowStatus = Literal["failed", "retrying"]


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row as operators see it (no headers or body).

    Attributes:
        id: the row's id (what :func:`retry_failed` takes).
        event_id: the event's id (the AMQP ``message_id``).
        routing_key: where it is published (``membership.action.shopify``).
        attempts: publishes RabbitMQ refused so far.
        last_error: the latest refusal (``PublishRefusedError: unroutable ...``).
        created_at: when it was written.
        next_attempt_at: when the relay tries it next (meaningless once failed).
        failed_at: when it was parked; None while it is still retried.
    """

    id: int
    event_id: str
    routing_key: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    failed_at: datetime | None


_COLUMNS = "id, event_id, routing_key, attempts, last_error, created_at, next_attempt_at, failed_at"


async def list_rows(
    pool: asyncpg.Pool, status: RowStatus = "failed", *, limit: int = 100
) -> list[OutboxRow]:
    """Rows parked as failed (``"failed"``), or still retried after a refusal
    (``"retrying"``: unpublished, at least one attempt), oldest first."""
    where = (
        "failed_at IS NOT NULL"
        if status == "failed"
        else "published_at IS NULL AND failed_at IS NULL AND attempts > 0"
    )
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY id LIMIT $1",  # noqa: S608
        limit,
    )
    return [OutboxRow(**dict(r)) for r in rows]


async def count_failed(pool: asyncpg.Pool) -> int:
    """Rows parked as failed (the ``crmsync_outbox_failed_rows`` gauge)."""
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL"))


async def retry_failed(pool: asyncpg.Pool, ids: Sequence[int] | None = None) -> list[int]:
    """Hand parked rows back to the relay: attempts reset to 0, due now.

    ``last_error`` is kept until the row is published, so it is clear why it had
    stopped. Rows that are not parked are left alone (a retry is idempotent).

    Args:
        pool: any pool on the crmsync database.
        ids: outbox row ids; None = every parked row.

    Returns:
        the ids handed back.
    """
    rows = await pool.fetch(
        """
        UPDATE outbox SET failed_at = NULL, attempts = 0, next_attempt_at = now()
        WHERE failed_at IS NOT NULL AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
        RETURNING id
        """,
        list(ids) if ids is not None else None,
    )
    return sorted(r["id"] for r in rows)
