"""Our rows as HubSpot records, and marking what HubSpot now has.

Every table HubSpot mirrors carries ``change_version`` (bumped on each change) and
``hubspot_synced_version`` (the version HubSpot last accepted). A row is pending
while the two differ; marking it synced at the version *read before the call* means
a change that lands during the call stays pending for the next push.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.clients.hubspot_models import to_property_value
from shared.messages.credits import CREDIT_FIELDS

CONTACT_SQL = """
SELECT c.id, c.student_id, c.email, c.hubspot_id, c.first_name, c.last_name, c.change_version,
       c.hubspot_synced_version,
       COALESCE(jsonb_object_agg(cc.credit_type, cc.balance)
                FILTER (WHERE cc.credit_type IS NOT NULL), '{}') AS credits
FROM contacts c LEFT JOIN contact_credits cc ON cc.contact_id = c.id
WHERE c.id = ANY($1::bigint[])
GROUP BY c.id ORDER BY c.id
"""


def contact_properties(row: asyncpg.Record) -> dict[str, str]:
    """HubSpot contact properties: identity and the five credit balances as strings."""
    props = {
        "email": to_property_value(row["email"]),
        "firstname": to_property_value(row["first_name"]),
        "lastname": to_property_value(row["last_name"]),
        "student_id": to_property_value(row["student_id"]),
    }
    credits = row["credits"] or {}
    props.update({f: to_property_value(credits[f]) for f in CREDIT_FIELDS if f in credits})
    # Never clear a value we do not know: HubSpot treats "" as "clear" (API.md §3.3).
    return {k: v for k, v in props.items() if v != ""}


@dataclass(frozen=True)
class Synced:
    """One row HubSpot accepted: our id, HubSpot's id, the version it now has."""

    row_id: int
    hubspot_id: str
    version: int


async def mark_synced(
    conn: asyncpg.Connection, table: str, entity: str, rows: Sequence[Synced]
) -> None:
    """Record HubSpot's ids and versions, clear errors, mark the audit log synced.

    Call it in a transaction: the rows are locked first, in id order, the order every
    writer of contacts locks them in (credits_fast, credits_bulk), so a batch of 100
    and a bulk refund over the same contacts wait for each other instead of
    deadlocking (an ``UPDATE ... FROM unnest`` locks in whatever order its join runs).
    """
    if not rows:
        return
    assert table in ("contacts", "bookings", "mock_exams")
    ids = [r.row_id for r in rows]
    await conn.execute(
        f"SELECT 1 FROM {table} WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",  # noqa: S608
        ids,
    )
    await conn.execute(
        f"""
        UPDATE {table} t SET hubspot_id = COALESCE(t.hubspot_id, v.hid),
               hubspot_synced_version = GREATEST(t.hubspot_synced_version, v.ver),
               hubspot_synced_at = now(), hubspot_error = NULL
        FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS v(id, hid, ver)
        WHERE t.id = v.id
        """,  # noqa: S608 (table is one of three fixed names)
        ids,
        [r.hubspot_id for r in rows],
        [r.version for r in rows],
    )
    await conn.execute(
        """
        UPDATE audit_log a SET synced_at = now()
        FROM unnest($2::bigint[], $3::bigint[]) AS v(id, ver)
        WHERE a.entity = $1 AND a.entity_id = v.id AND a.entity_version <= v.ver
          AND a.synced_at IS NULL
        """,
        entity,
        ids,
        [r.version for r in rows],
    )


async def mark_failed(conn: asyncpg.Connection, table: str, errors: dict[int, str]) -> None:
    """Keep each failed row pending, with HubSpot's error for people to read."""
    if not errors:
        return
    assert table in ("contacts", "bookings", "mock_exams")
    await conn.execute(
        f"""
        UPDATE {table} t SET hubspot_error = v.err
        FROM unnest($1::bigint[], $2::text[]) AS v(id, err) WHERE t.id = v.id
        """,  # noqa: S608 (table is one of three fixed names)
        list(errors),
        [e[:1000] for e in errors.values()],
    )
