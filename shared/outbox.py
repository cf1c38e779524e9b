"""Transactional outbox: write events with the business rows, publish them after.

A handler calls :func:`enqueue` inside its transaction; the event is durable exactly
when the rows are. :class:`OutboxRelay` (one per syncer / scheduler replica, any
number at once: rows are claimed with ``FOR UPDATE SKIP LOCKED``) publishes pending
rows with confirms and marks them published. A crash between publish and mark means
a second publish of the same event id, which consumers drop: at-least-once in,
exactly-once effect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from shared.broker import Broker
from shared.errors import BrokerUnavailableError
from shared.events import CloudEvent
from shared.metrics import OUTBOX_FAILURES, OUTBOX_PUBLISHED

log = structlog.get_logger(__name__)

# Published rows are kept this long for audit and replay, then deleted.
KEEP_PUBLISHED_S = 86_400


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


def _event_from_row(row: asyncpg.Record) -> CloudEvent:
    headers: dict[str, Any] = row["headers"]
    return CloudEvent.from_amqp(headers, row["body"], row["content_type"])


class OutboxRelay:
    """Publishes pending outbox rows, polling every ``poll_s`` while there are none.

    It polls rather than LISTENs: a NOTIFY in every writing transaction would
    serialise their commits (see migrations/0007). A poll is one index-only probe of
    the partial index on unpublished rows.

    Args:
        pool: the service's pool.
        broker: publishes with confirms.
        poll_s: seconds between polls when the outbox is empty (50 ms by default).
        batch_size: rows claimed per round.
    """

    def __init__(
        self, pool: asyncpg.Pool, broker: Broker, *, poll_s: float = 1.0, batch_size: int = 200
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.poll_s = poll_s
        self.batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        rounds = 0
        while True:
            try:
                while await self.drain() == self.batch_size:
                    pass
                rounds += 1
                if rounds % 20_000 == 0:  # about every 20 minutes at 50 ms
                    await self.prune()
            except BrokerUnavailableError as exc:
                OUTBOX_FAILURES.inc()
                log.warning("outbox.publish_failed", error=str(exc))
            except (asyncpg.PostgresError, OSError) as exc:
                OUTBOX_FAILURES.inc()
                log.warning("outbox.db_failed", error=str(exc))
            await asyncio.sleep(self.poll_s)

    async def drain(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        # An idle poll is one index probe, not BEGIN / SELECT FOR UPDATE / COMMIT.
        if not await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)"
        ):
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT id, routing_key, headers, body, content_type FROM outbox
                WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
                """,
                self.batch_size,
            )
            if not rows:
                return 0
            await asyncio.gather(
                *(self.broker.publish(_event_from_row(r), r["routing_key"]) for r in rows)
            )
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)

    async def prune(self) -> None:
        """Delete rows published more than a day ago."""
        await self.pool.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            float(KEEP_PUBLISHED_S),
        )
