"""crmsync's side of W1: the SQL on ``profiles``, ``crm_mappings`` and ``packages``.

Every write is an upsert by a natural key (``profile_id``, ``crm_package_id``) that
leaves unchanged rows alone, so a replayed sync writes nothing. :func:`read_profile`
runs on its own (before the CRM is read, no transaction held); every other function
runs in the caller's write transaction.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.syncer.packages.crm import CrmPackage
from services.syncer.packages.matching import MatchResult

_UPSERT_PROFILE = """
INSERT INTO profiles AS p (profile_id, email, phone, phone_e164, first_name, last_name,
                           last_login_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (profile_id) DO UPDATE SET
    email = COALESCE(EXCLUDED.email, p.email),
    phone = COALESCE(EXCLUDED.phone, p.phone),
    phone_e164 = CASE WHEN EXCLUDED.phone IS NULL THEN p.phone_e164 ELSE EXCLUDED.phone_e164 END,
    first_name = COALESCE(EXCLUDED.first_name, p.first_name),
    last_name = COALESCE(EXCLUDED.last_name, p.last_name),
    last_login_at = GREATEST(p.last_login_at, EXCLUDED.last_login_at),
    updated_at = now()
-- An unchanged profile is not rewritten; the conflicting row is locked all the same.
WHERE (p.email, p.phone, p.first_name, p.last_name, p.last_login_at) IS DISTINCT FROM
      (COALESCE(EXCLUDED.email, p.email), COALESCE(EXCLUDED.phone, p.phone),
       COALESCE(EXCLUDED.first_name, p.first_name), COALESCE(EXCLUDED.last_name, p.last_name),
       GREATEST(p.last_login_at, EXCLUDED.last_login_at))
"""

# Before the CRM is read. The snapshot is taken when the statement starts and the
# ticket while it runs, so a sync holding a higher ticket read crmsync's rows no earlier.
_READ_PROFILE = """
SELECT nextval('crm_read_tickets') AS ticket, p.profile_id IS NOT NULL AS found,
       p.email, p.phone_e164, p.first_name, p.last_name,
       m.status, m.crm_customer_id, m.method
FROM (SELECT 1) one
LEFT JOIN profiles p ON p.profile_id = $1
LEFT JOIN crm_mappings m ON m.profile_id = p.profile_id
"""

# In the write transaction, after the upsert (a new snapshot: it sees what a concurrent
# sync committed while we waited for the row lock).
_LOCK_PROFILE = """
SELECT p.email, p.phone_e164, p.first_name, p.last_name, p.crm_read_ticket,
       m.status, m.crm_customer_id, m.method
FROM profiles p LEFT JOIN crm_mappings m USING (profile_id)
WHERE p.profile_id = $1
FOR UPDATE OF p
"""

_RECORD_MAPPING = """
INSERT INTO crm_mappings AS m (profile_id, status, crm_customer_id, method, matched_at,
                               unmatched_reason, attempts, last_attempt_at)
VALUES ($1, $2, $3, $4, CASE WHEN $2 = 'matched' THEN $6::timestamptz END, $5, 1, $6)
ON CONFLICT (profile_id) DO UPDATE SET
    status = EXCLUDED.status, crm_customer_id = EXCLUDED.crm_customer_id,
    method = EXCLUDED.method, matched_at = EXCLUDED.matched_at,
    unmatched_reason = EXCLUDED.unmatched_reason, attempts = m.attempts + 1,
    last_attempt_at = EXCLUDED.last_attempt_at, updated_at = now()
"""

_WRITE_PACKAGES = """
WITH incoming AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::timestamptz[], $8::text[], $9::numeric[], $10::numeric[],
                         $11::text[], $12::timestamptz[])
        AS t(crm_package_id, package_type, name, purchased_at, expires_at, unit, total, used,
             status, crm_updated_at)
), upserted AS (
    INSERT INTO packages AS p (crm_package_id, profile_id, crm_customer_id, package_type,
                               name, purchased_at, expires_at, unit, total, used, status,
                               crm_updated_at, synced_at)
    SELECT crm_package_id, $1, $2, package_type, name, purchased_at, expires_at, unit, total,
           used, status, crm_updated_at, $13
    FROM incoming
    ON CONFLICT (crm_package_id) DO UPDATE SET
        profile_id = EXCLUDED.profile_id, crm_customer_id = EXCLUDED.crm_customer_id,
        package_type = EXCLUDED.package_type, name = EXCLUDED.name,
        purchased_at = EXCLUDED.purchased_at, expires_at = EXCLUDED.expires_at,
        unit = EXCLUDED.unit, total = EXCLUDED.total, used = EXCLUDED.used,
        status = EXCLUDED.status, crm_updated_at = EXCLUDED.crm_updated_at,
        removed_at = NULL, synced_at = EXCLUDED.synced_at
    -- Unchanged packages are not rewritten, so ``changed`` counts real changes.
    WHERE p.removed_at IS NOT NULL
       OR (p.profile_id, p.crm_customer_id, p.package_type, p.name, p.purchased_at,
           p.expires_at, p.unit, p.total, p.used, p.status, p.crm_updated_at)
          IS DISTINCT FROM
          (EXCLUDED.profile_id, EXCLUDED.crm_customer_id, EXCLUDED.package_type,
           EXCLUDED.name, EXCLUDED.purchased_at, EXCLUDED.expires_at, EXCLUDED.unit,
           EXCLUDED.total, EXCLUDED.used, EXCLUDED.status, EXCLUDED.crm_updated_at)
    RETURNING 1
), removed AS (
    -- By profile, not customer: after a re-match the old customer's packages go too.
    UPDATE packages SET removed_at = $13, synced_at = $13
    WHERE profile_id = $1 AND removed_at IS NULL AND NOT crm_package_id = ANY($3::text[])
    RETURNING 1
), mapping AS (
    UPDATE crm_mappings SET synced_at = $13, updated_at = now() WHERE profile_id = $1
)
SELECT (SELECT count(*) FROM upserted) AS changed, (SELECT count(*) FROM removed) AS removed
"""


async def read_profile(db: asyncpg.Pool | asyncpg.Connection, profile_id: str) -> asyncpg.Record:
    """The profile's stored keys and mapping, and a new CRM read ticket; one statement,
    no lock, no transaction.

    Returns:
        ``ticket`` (from ``crm_read_tickets``), ``found`` (False: no such profile; the
        other columns are then NULL), ``email``, ``phone_e164``, ``first_name``,
        ``last_name``, and the mapping's ``status``, ``crm_customer_id``, ``method``
        (NULL when it has none).
    """
    row: asyncpg.Record | None = await db.fetchrow(_READ_PROFILE, profile_id)
    assert row is not None
    return row


async def upsert_profile(
    conn: asyncpg.Connection,
    profile_id: str,
    *,
    email: str | None,
    phone: str | None,
    phone_e164: str | None,
    first_name: str | None,
    last_name: str | None,
    last_login_at: datetime | None,
) -> None:
    """Upsert the profile (None keeps the stored value; ``last_login_at`` only moves
    forward); its row stays locked until the transaction ends."""
    await conn.execute(
        _UPSERT_PROFILE, profile_id, email, phone, phone_e164, first_name, last_name, last_login_at
    )


async def lock_profile(conn: asyncpg.Connection, profile_id: str) -> asyncpg.Record | None:
    """Lock the profile's row until the transaction ends; its keys, ``crm_read_ticket``
    and mapping as :func:`read_profile` gives them, or None when there is no profile."""
    row: asyncpg.Record | None = await conn.fetchrow(_LOCK_PROFILE, profile_id)
    return row


async def record_read(conn: asyncpg.Connection, profile_id: str, ticket: int) -> None:
    """The profile's data now comes from the CRM read that took ``ticket``."""
    await conn.execute(
        "UPDATE profiles SET crm_read_ticket = $2 WHERE profile_id = $1", profile_id, ticket
    )


async def upsert_mapping(
    conn: asyncpg.Connection, profile_id: str, match: MatchResult, now: datetime
) -> None:
    """Record a match (method, ``matched_at = now``) or an unmatched attempt (reason);
    either way one more attempt at ``now``.

    Raises:
        asyncpg.UniqueViolationError: the customer is mapped to another profile.
    """
    await conn.execute(
        _RECORD_MAPPING,
        profile_id,
        "matched" if match.matched else "unmatched",
        match.customer_id,
        match.method,
        match.reason,
        now,
    )


async def mapped_profile(conn: asyncpg.Connection, crm_customer_id: str) -> str | None:
    """The profile that holds ``crm_customer_id``, if any."""
    holder: str | None = await conn.fetchval(
        "SELECT profile_id FROM crm_mappings WHERE crm_customer_id = $1 AND status = 'matched'",
        crm_customer_id,
    )
    return holder


async def write_packages(
    conn: asyncpg.Connection,
    profile_id: str,
    customer_id: str,
    packages: list[CrmPackage],
    now: datetime,
) -> tuple[int, int]:
    """Upsert the customer's packages as the CRM has them now, mark the profile's
    others removed, and stamp the mapping's ``synced_at``.

    Returns:
        (rows inserted or changed, rows newly marked removed).
    """
    row = await conn.fetchrow(
        _WRITE_PACKAGES,
        profile_id,
        customer_id,
        [p.id for p in packages],
        [p.package_type for p in packages],
        [p.name for p in packages],
        [p.purchased_at for p in packages],
        [p.expires_at for p in packages],
        [p.unit for p in packages],
        [p.total for p in packages],
        [p.used for p in packages],
        [p.status for p in packages],
        [p.updated_at for p in packages],
        now,
    )
    assert row is not None
    return int(row["changed"]), int(row["removed"])


async def remove_all_packages(conn: asyncpg.Connection, profile_id: str, now: datetime) -> int:
    """Mark every package of the profile removed (its customer is gone); returns how
    many were not already."""
    status: str = await conn.execute(
        "UPDATE packages SET removed_at = $2, synced_at = $2"
        " WHERE profile_id = $1 AND removed_at IS NULL",
        profile_id,
        now,
    )
    return int(status.rsplit(" ", 1)[1])
