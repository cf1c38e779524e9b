"""Who may send a contact to HubSpot right now: leases on ``contacts.hubspot_push_due_at``.

A credit writer marks the contact due (``hubspot_push_due_at = now()`` unless a time is
already set) in the transaction of the change; that mark is the durable intent that
replaced the outbox row and the ``syncer.hubspot.contacts`` message per change
(migration 0013). Before a pusher or the batch sync sends contacts, :func:`claim` moves
their time ``lease_s`` ahead, skipping every contact another sender holds (or a writer
has locked), so two replicas never have the same contact on the wire at once: a later
state can never be overtaken by an earlier one sent elsewhere. After HubSpot answered,
:func:`release` (in the transaction that marks the rows synced) clears the time, or sets
it to ``now()`` for a contact that changed while it was on the wire; after a whole call
failed, :func:`defer` sets it ``retry_s`` ahead. A sender that dies holding a lease
loses it when the time passes: the contact is due again and any pusher's sweep takes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from shared.settings import SyncerSettings

# Of the contacts $1, those due ($4: or with no time at all); $2 seconds of lease, $3
# at most this many. SKIP LOCKED: a contact a writer or another sender holds is left to
# it (it is due again once they are done).
CLAIM_SQL = """
WITH free AS (
    SELECT id FROM contacts
    WHERE id = ANY($1::bigint[])
      AND (hubspot_push_due_at <= now() OR ($4::bool AND hubspot_push_due_at IS NULL))
    ORDER BY id LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE contacts c SET hubspot_push_due_at = now() + make_interval(secs => $2)
FROM free WHERE c.id = free.id
RETURNING c.id
"""

# Locks first, in id order (the order every writer of contacts locks them in), then
# clears each time, or makes it due again when the contact changed after the version
# that was sent. Returns the ids due again.
RELEASE_SQL = """
UPDATE contacts c SET hubspot_push_due_at =
    CASE WHEN c.change_version > v.sent THEN now() END
FROM unnest($1::bigint[], $2::bigint[]) AS v(id, sent)
WHERE c.id = v.id
RETURNING c.id, c.hubspot_push_due_at IS NOT NULL AS again
"""

DEFER_SQL = """
UPDATE contacts c SET hubspot_push_due_at = now() + make_interval(secs => $2)
FROM (SELECT id FROM contacts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE) AS l
WHERE c.id = l.id
"""

LOCK_SQL = "SELECT 1 FROM contacts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"


@dataclass(frozen=True)
class PushLeases:
    """How long a sender holds a contact and when a failed call is tried again.

    Args:
        lease_s: seconds a claim holds a contact; longer than a batch call with its
            retries and rate-limit waits, or another replica may send it meanwhile.
        retry_s: seconds until contacts whose whole call failed are due again.
    """

    lease_s: float = 120.0
    retry_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: SyncerSettings) -> PushLeases:
        """``CRMSYNC_HUBSPOT_PUSH_LEASE_S`` and ``CRMSYNC_HUBSPOT_PUSH_RETRY_S``."""
        return cls(settings.hubspot_push_lease_s, settings.hubspot_push_retry_s)


async def claim(
    db: asyncpg.Pool | asyncpg.Connection,
    ids: Sequence[int],
    leases: PushLeases,
    *,
    undue: bool = False,
) -> list[int]:
    """Take the lease of those of ``ids`` that are due and no one holds (``undue``: and
    of those with no time, which the batch sync sends too). A contact poked but sent
    since (its time cleared) is not taken again. Returns the ids taken, in id order."""
    rows = await db.fetch(CLAIM_SQL, list(ids), leases.lease_s, len(ids), undue)
    return sorted(r["id"] for r in rows)


async def mark_due(db: asyncpg.Pool | asyncpg.Connection, contact_id: int) -> None:
    """Make a contact due now (unless a sender holds it): a push with no change behind
    it, such as the drift check's repair."""
    await db.execute(
        "UPDATE contacts SET hubspot_push_due_at = coalesce(hubspot_push_due_at, now())"
        " WHERE id = $1",
        contact_id,
    )


async def lock(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    """Lock these contacts in id order (call it first in the release transaction)."""
    await conn.execute(LOCK_SQL, list(ids))


async def release(conn: asyncpg.Connection, sent: Mapping[int, int]) -> list[int]:
    """Give back the leases of ``sent`` (contact id -> the change_version sent), in the
    caller's transaction after :func:`lock`. Returns the contacts due again (changed
    while on the wire)."""
    if not sent:
        return []
    rows = await conn.fetch(RELEASE_SQL, list(sent), list(sent.values()))
    return sorted(r["id"] for r in rows if r["again"])


async def defer(db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[int], retry_s: float) -> None:
    """Make these contacts due again in ``retry_s`` seconds (their whole call failed)."""
    if ids:
        await db.execute(DEFER_SQL, list(ids), retry_s)


async def give_back(pool: asyncpg.Pool, sent: Mapping[int, int]) -> list[int]:
    """:func:`lock` and :func:`release` in a transaction of their own (rows claimed but
    not sent: ``sent`` maps each to the change_version it has)."""
    if not sent:
        return []
    async with pool.acquire() as conn, conn.transaction():
        await lock(conn, list(sent))
        return await release(conn, sent)
