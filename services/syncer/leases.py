"""Per-customer leases: one provider reconcile of a customer at a time, across replicas.

A lease is a ``provider_leases`` row (customer, owner, expiry), taken with one
conditional write whose row count says who won (STYLE.md §8): free or expired → ours,
otherwise busy. Times are the database's (``now()``), never a replica's clock. While
the provider calls run, :func:`hold` renews the lease every third of its length with
short statements (no connection is held in between), and cancels the work the moment
a renewal fails, so a lease that could not be renewed never covers a write: a
successor takes an expired lease over and the old holder has stopped by then. The
remaining gap is the usual one of leases: a process paused for longer than the lease
(SIGSTOP, a VM freeze) may still send one request after it lost the lease; the next
reconcile then corrects what it wrote, because it reads before it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class LeaseLostError(Exception):
    """The lease expired or was taken over before the work finished."""


def new_owner() -> str:
    """``"<host>:<pid>:<8 hex>"``, unique per claim, so a renewal or release by a
    claim that lost its lease never touches its successor's."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    """A held lease: ``customer_id``'s, held by ``owner``, ``lease_s`` seconds a time."""

    customer_id: int
    owner: str
    lease_s: float


async def try_acquire(conn: asyncpg.Connection, lease: Lease) -> bool:
    """Take the customer's lease if it is free or expired; False if someone holds it.

    One statement: an insert, or an update of an expired row; a concurrent claimant
    waits on the row and then finds it held.
    """
    won = await conn.fetchval(
        """
        INSERT INTO provider_leases (customer_id, owner, acquired_at, expires_at)
        VALUES ($1, $2, now(), now() + make_interval(secs => $3))
        ON CONFLICT (customer_id) DO UPDATE
            SET owner = EXCLUDED.owner, acquired_at = now(), expires_at = EXCLUDED.expires_at
            WHERE provider_leases.expires_at <= now()
        RETURNING true
        """,
        lease.customer_id,
        lease.owner,
        lease.lease_s,
    )
    return bool(won)


async def renew(pool: asyncpg.Pool, lease: Lease) -> bool:
    """Move the expiry to now + ``lease_s``; False if the lease is no longer ours."""
    renewed = await pool.fetchval(
        """
        UPDATE provider_leases SET expires_at = now() + make_interval(secs => $3)
        WHERE customer_id = $1 AND owner = $2 AND expires_at > now()
        RETURNING true
        """,
        lease.customer_id,
        lease.owner,
        lease.lease_s,
    )
    return bool(renewed)


async def still_held(conn: asyncpg.Connection, lease: Lease) -> bool:
    """True while the lease is ours and unexpired; locks the row until the transaction ends."""
    held = await conn.fetchval(
        """
        SELECT true FROM provider_leases
        WHERE customer_id = $1 AND owner = $2 AND expires_at > now() FOR UPDATE
        """,
        lease.customer_id,
        lease.owner,
    )
    return bool(held)


async def release(conn: asyncpg.Connection | asyncpg.Pool, lease: Lease) -> None:
    """Give the lease up (a no-op if it was taken over meanwhile)."""
    await conn.execute(
        "DELETE FROM provider_leases WHERE customer_id = $1 AND owner = $2",
        lease.customer_id,
        lease.owner,
    )


async def hold(pool: asyncpg.Pool, lease: Lease, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` while renewing ``lease`` every ``lease_s / 3`` seconds.

    Raises:
        LeaseLostError: a renewal found the lease gone, or failed (database away): the
            work is cancelled first.
        Exception: whatever ``work`` raised.
    """
    task = asyncio.ensure_future(work())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=lease.lease_s / 3)
            if task in done:
                return task.result()
            try:
                renewed = await renew(pool, lease)
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                log.warning("provider_lease.renew_failed", error=f"{type(exc).__name__}: {exc}")
                renewed = False
            if not renewed:
                raise LeaseLostError(f"lease of customer {lease.customer_id} lost")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
