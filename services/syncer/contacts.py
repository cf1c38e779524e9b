"""Contacts (students): find one by any of its keys, or create it."""

from __future__ import annotations

import asyncpg

from shared.messages.credits import ContactRef

_FIND = """
SELECT id, student_id, email, hubspot_id FROM contacts
WHERE ($1::text IS NOT NULL AND hubspot_id = $1)
   OR ($2::text IS NOT NULL AND student_id = $2)
   OR ($3::text IS NOT NULL AND lower(email) = lower($3))
ORDER BY (hubspot_id = $1) IS TRUE DESC, (student_id = $2) IS TRUE DESC
LIMIT 1
FOR UPDATE
"""


async def resolve_contact(conn: asyncpg.Connection, ref: ContactRef) -> int:
    """The contact's row id, matched by HubSpot id, then student id, then email
    (case-insensitive); created when none matches. Keys the row lacks are filled in.

    Runs in the caller's transaction and locks the row. Two replicas creating the
    same new contact at once: the loser's insert hits a unique index inside a
    savepoint and it takes the winner's row.
    """
    for _ in range(3):
        row = await conn.fetchrow(_FIND, ref.hubspot_id, ref.student_id, ref.email)
        if row is not None:
            await _fill_keys(conn, row, ref)
            return int(row["id"])
        try:
            async with conn.transaction():
                contact_id: int = await conn.fetchval(
                    """
                    INSERT INTO contacts (student_id, email, hubspot_id, first_name, last_name)
                    VALUES ($1, $2, $3, $4, $5) RETURNING id
                    """,
                    ref.student_id,
                    ref.email,
                    ref.hubspot_id,
                    ref.first_name,
                    ref.last_name,
                )
                return contact_id
        except asyncpg.UniqueViolationError:
            continue
    raise RuntimeError("contact could not be resolved after concurrent inserts")


async def _fill_keys(conn: asyncpg.Connection, row: asyncpg.Record, ref: ContactRef) -> None:
    """Add keys we learn (a HubSpot id, an email) without overwriting known ones."""
    missing = (
        (row["hubspot_id"] is None and ref.hubspot_id)
        or (row["student_id"] is None and ref.student_id)
        or (row["email"] is None and ref.email)
    )
    if not missing and not (ref.first_name or ref.last_name):
        return
    try:
        async with conn.transaction():
            await conn.execute(
                """
                UPDATE contacts SET
                    hubspot_id = COALESCE(hubspot_id, $2), student_id = COALESCE(student_id, $3),
                    email = COALESCE(email, $4), first_name = COALESCE($5, first_name),
                    last_name = COALESCE($6, last_name), updated_at = now()
                WHERE id = $1
                """,
                row["id"],
                ref.hubspot_id,
                ref.student_id,
                ref.email,
                ref.first_name,
                ref.last_name,
            )
    except asyncpg.UniqueViolationError:
        pass  # that key belongs to another contact already; keep what we have
