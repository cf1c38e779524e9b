"""Push rows to HubSpot in batches: real-time contact pushes and the batch sync.

A row HubSpot knows (``hubspot_id``) is batch-updated by id; one it does not is
batch-upserted by its unique property (``email`` for contacts, HubSpot's own unique
contact property, API.md §3.4; ``exam_ref`` / ``booking_ref`` for the custom objects),
so sending it twice, or after a crash between HubSpot's answer and our commit, never
creates a duplicate (API.md §7 rule 5). A row with neither cannot be sent and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from services.syncer.hubspot.records import (
    CONTACT_SQL,
    Synced,
    contact_properties,
    mark_failed,
    mark_synced,
)
from shared.clients.hubspot import HubSpotClient
from shared.clients.hubspot_batch import BatchResult
from shared.clients.hubspot_models import BatchUpdateInput, BatchUpsertInput, HubSpotObject

CONTACTS = "contacts"
NO_KEY = "no HubSpot id and no unique key: cannot be sent to HubSpot"


@dataclass
class PushOutcome:
    """Row ids created / updated in HubSpot, and those that failed with the reason."""

    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    # HubSpot id of each row that made it (for associations).
    hubspot_ids: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    """How one of our tables maps to a HubSpot object type."""

    table: str
    entity: str
    object_type: str
    properties: Callable[[asyncpg.Record], dict[str, str]]
    # (unique property, value) for an upsert, or None when the row has no key.
    unique: Callable[[asyncpg.Record], tuple[str, str] | None]


def contact_kind() -> Kind:
    def unique(row: asyncpg.Record) -> tuple[str, str] | None:
        return ("email", row["email"].lower()) if row["email"] else None

    return Kind("contacts", "contact", CONTACTS, contact_properties, unique)


async def push_rows(
    hubspot: HubSpotClient, pool: asyncpg.Pool, kind: Kind, rows: Sequence[asyncpg.Record]
) -> PushOutcome:
    """Send up to 100 rows' current state; mark what HubSpot accepted, keep the rest pending.

    Raises:
        ProviderUnavailableError, QuotaExhaustedError, ProviderRejectedError: the
            whole call failed; nothing is marked, the rows stay pending.
    """
    outcome = PushOutcome()
    updates: list[BatchUpdateInput] = []
    upserts: list[BatchUpsertInput] = []
    versions = {r["id"]: r["change_version"] for r in rows}
    for row in rows:
        props = kind.properties(row)
        trace = str(row["id"])
        key = kind.unique(row)
        if row["hubspot_id"]:
            updates.append(
                BatchUpdateInput(
                    id=row["hubspot_id"], properties=props, object_write_trace_id=trace
                )
            )
        elif key is not None:
            upserts.append(
                BatchUpsertInput(
                    id=key[1], id_property=key[0], properties=props, object_write_trace_id=trace
                )
            )
        else:
            outcome.failed[row["id"]] = NO_KEY
    calls = []
    if updates:
        calls.append(hubspot.batch_update(kind.object_type, updates))
    if upserts:
        calls.append(hubspot.batch_upsert(kind.object_type, upserts))
    results: list[BatchResult[HubSpotObject]] = list(await asyncio.gather(*calls))
    batches: list[Sequence[BatchUpdateInput | BatchUpsertInput]] = [
        b for b in (updates, upserts) if b
    ]
    synced: list[Synced] = []
    for inputs, result in zip(batches, results, strict=True):
        for item in result.outcomes(inputs):
            row_id = int(item.input.object_write_trace_id or 0)
            if item.ok:
                hubspot_id = item.result.id if item.result else item.input.id
                if isinstance(item.input, BatchUpsertInput) and item.result is None:
                    outcome.failed[row_id] = "HubSpot returned no id for the upsert"
                    continue
                synced.append(Synced(row_id, hubspot_id, versions[row_id]))
                outcome.hubspot_ids[row_id] = hubspot_id
                created = item.result is not None and item.result.new is True
                (outcome.created if created else outcome.updated).append(row_id)
            else:
                message = item.error.message if item.error else "not in HubSpot's answer"
                category = f"{item.error.category}: " if item.error and item.error.category else ""
                outcome.failed[row_id] = category + message
    async with pool.acquire() as conn, conn.transaction():
        await mark_synced(conn, kind.table, kind.entity, synced)
        await mark_failed(conn, kind.table, outcome.failed)
    return outcome


async def push_contacts(
    pool: asyncpg.Pool, hubspot: HubSpotClient, contact_ids: Sequence[int]
) -> PushOutcome:
    """Send up to 100 contacts' current state (read now, not taken from any event)."""
    rows = await pool.fetch(CONTACT_SQL, list(contact_ids))
    return await push_rows(hubspot, pool, contact_kind(), rows)
