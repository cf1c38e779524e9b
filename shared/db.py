"""asyncpg pool (acquire and command timeouts, per-queue connection shares) and the
idempotency claim every transactional handler makes.

**Connection shares.** A consumer runs its handlers under :func:`connection_share`
(one semaphore per queue): every acquire from a :class:`Pool` inside it first takes a
slot of that share, within the same acquire timeout. So the handlers of one queue hold
at most that many of the pool's connections at once, however many of them run, and a
queue whose transactions are slow leaves connections for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Generator, Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import asyncpg

from shared.errors import TransientError

# The share of the current consumer's queue (None outside consumers: relay, tests).
_share: ContextVar[asyncio.Semaphore | None] = ContextVar("crmsync_db_share", default=None)


class DatabaseBusyError(TransientError):
    """No connection of the pool came free within the acquire timeout: every one is in
    use (a slow query, a burst of handlers) or this queue's share is. Retrying later is
    the remedy."""


@contextlib.contextmanager
def connection_share(slots: asyncio.Semaphore | None) -> Iterator[None]:
    """Acquires from a :class:`Pool` inside this block take one of ``slots`` first."""
    token = _share.set(slots)
    try:
        yield
    finally:
        _share.reset(token)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no types
    """An ``asyncpg.Pool`` whose acquires wait at most ``acquire_timeout_s`` by default
    and then raise :class:`DatabaseBusyError` instead of ``TimeoutError``, and take a
    slot of the current :func:`connection_share` first.

    Every helper of the pool (``fetch``, ``execute``...) acquires through
    :meth:`acquire`, so they all have the deadline and the share.
    """

    acquire_timeout_s: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The share slot each acquired connection holds, by ``id(connection)``.
        self._held_slots: dict[int, asyncio.Semaphore] = {}

    def acquire(self, *, timeout: float | None = None) -> _TimedAcquire:
        wait_s = timeout if timeout is not None else self.acquire_timeout_s
        return _TimedAcquire(self, wait_s, _share.get())

    async def release(
        self,
        connection: asyncpg.Connection,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's own signature)
    ) -> None:
        try:
            await super().release(connection, timeout=timeout)
        finally:
            slots = self._held_slots.pop(id(connection), None)
            if slots is not None:
                slots.release()

    async def _timed_acquire(
        self, wait_s: float | None, slots: asyncio.Semaphore | None
    ) -> asyncpg.Connection:
        try:
            async with asyncio.timeout(wait_s):
                if slots is not None:
                    await slots.acquire()
                try:
                    connection = await super().acquire()
                except BaseException:
                    if slots is not None:
                        slots.release()
                    raise
        except TimeoutError as exc:
            which = "of this queue's share " if slots is not None and slots.locked() else ""
            raise DatabaseBusyError(
                f"no database connection {which}free within {wait_s} s"
            ) from exc
        if slots is not None:
            self._held_slots[id(connection)] = slots
        return connection


class _TimedAcquire:
    """What ``pool.acquire()`` returns: awaitable, or an async context manager."""

    __slots__ = ("_connection", "_pool", "_slots", "_wait_s")

    def __init__(self, pool: Pool, wait_s: float | None, slots: asyncio.Semaphore | None) -> None:
        self._pool = pool
        self._wait_s = wait_s
        self._slots = slots
        self._connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._pool._timed_acquire(self._wait_s, self._slots)
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._pool._timed_acquire(self._wait_s, self._slots).__await__()


class LeanConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pooled connection released without asyncpg's session reset.

    asyncpg runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release: four statements and a round trip per acquire, 9 of the 23
    statements per credit notification measured in issue 11. crmsync's pooled
    connections keep no session state (no LISTEN, cursors outside a transaction,
    ``SET`` without ``LOCAL`` or session advisory locks: migrations use a connection of
    their own), so there is nothing to reset. An open transaction is still rolled back
    on release (asyncpg always does that).
    """

    def get_reset_query(self) -> str:
        return ""


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
        connection_class=kwargs.pop("connection_class", LeanConnection),
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
