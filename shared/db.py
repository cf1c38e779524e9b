"""asyncpg pool (with acquire and command timeouts) and the idempotency claim every
transactional handler makes."""

from __future__ import annotations

import json
from collections.abc import Generator
from types import TracebackType
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext

from shared.errors import TransientError


class DatabaseBusyError(TransientError):
    """No connection of the pool came free within the acquire timeout: every one is in
    use (a slow query, a burst of handlers). Retrying later is the remedy."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no types
    """An ``asyncpg.Pool`` whose acquires wait at most ``acquire_timeout_s`` by default
    and then raise :class:`DatabaseBusyError` instead of ``TimeoutError``.

    Every helper of the pool (``fetch``, ``execute``...) acquires through
    :meth:`acquire`, so they all have the deadline.
    """

    acquire_timeout_s: float | None = None

    def acquire(self, *, timeout: float | None = None) -> _TimedAcquire:
        wait_s = timeout if timeout is not None else self.acquire_timeout_s
        return _TimedAcquire(super().acquire(timeout=wait_s), wait_s)


class _TimedAcquire:
    """``pool.acquire()`` as asyncpg gives it, with a timeout turned into a TransientError."""

    __slots__ = ("_inner", "_wait_s")

    def __init__(self, inner: PoolAcquireContext, wait_s: float | None) -> None:
        self._inner = inner
        self._wait_s = wait_s

    def _busy(self, exc: TimeoutError) -> DatabaseBusyError:
        return DatabaseBusyError(f"no database connection free within {self._wait_s} s")

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            return await self._inner.__aenter__()
        except TimeoutError as exc:
            raise self._busy(exc) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._acquire().__await__()

    async def _acquire(self) -> asyncpg.Connection:
        try:
            return await self._inner
        except TimeoutError as exc:
            raise self._busy(exc) from exc


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout_s: float | None = None,
    command_timeout_s: float | None = None,
    **kwargs: Any,
) -> Pool:
    """An asyncpg pool with JSON codecs set up.

    Args:
        dsn: ``postgresql://user@host:5432/db``.
        min_size: connections kept open.
        max_size: connections at most; bound it below Postgres' ``max_connections``
            divided by the number of replicas.
        acquire_timeout_s: longest wait for a free connection, in seconds, before
            :class:`DatabaseBusyError` (a ``TransientError``); None waits forever.
            ``CRMSYNC_DB_ACQUIRE_TIMEOUT_S``.
        command_timeout_s: default deadline of every statement, in seconds (asyncpg's
            ``command_timeout``: the statement is cancelled and ``TimeoutError``
            raised); None for none. ``CRMSYNC_DB_COMMAND_TIMEOUT_S``.
        kwargs: passed on to ``asyncpg.create_pool``.
    """
    if command_timeout_s is not None:
        kwargs.setdefault("command_timeout", command_timeout_s)
    pool = Pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=kwargs.pop("max_queries", 50_000),
        max_inactive_connection_lifetime=kwargs.pop("max_inactive_connection_lifetime", 300.0),
        init=_init_connection,
        loop=None,
        connection_class=kwargs.pop("connection_class", asyncpg.Connection),
        record_class=kwargs.pop("record_class", asyncpg.Record),
        **kwargs,
    )
    pool.acquire_timeout_s = acquire_timeout_s
    await pool
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


async def already_processed(
    db: asyncpg.Pool | asyncpg.Connection, consumer: str, event_id: str
) -> bool:
    """Whether ``consumer`` has committed ``event_id`` (a read, no lock): lets a handler
    skip slow work for a redelivery before it claims the message in its transaction."""
    found = await db.fetchval(
        "SELECT true FROM processed_messages WHERE consumer = $1 AND event_id = $2",
        consumer,
        event_id,
    )
    return bool(found)
