"""Push rows to HubSpot in batches: real-time contact pushes and the batch sync.

A row HubSpot knows (``hubspot_id``) is batch-updated by id; one it does not is
batch-upserted by its unique property (``email`` for contacts, HubSpot's own unique
contact property, API.md §3.4; ``exam_ref`` / ``booking_ref`` for the custom objects),
so sending it twice, or after a crash between HubSpot's answer and our commit, never
creates a duplicate (API.md §7 rule 5). A row with neither cannot be sent and says so.

**One bad record never fails its batch.** HubSpot reports a record it refuses either in
a 207 (API.md §7) or, when it cannot apply a batch partly (upserts by email, §3.4),
by refusing the whole call with a 400 (§7 rule 6, §8). On a 400 the batch is split in
two and each half sent again, down to the record HubSpot refuses, which alone keeps
``hubspot_error``; the others are synced. One bad record in 100 costs about 14 calls
(2·log2 100); a 400 that every record earns (a missing property) costs 2n - 1 calls
once and marks every record with the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import structlog

from services.syncer.hubspot import push_leases
from services.syncer.hubspot.push_leases import PushLeases
from services.syncer.hubspot.records import (
    CONTACT_SQL,
    Synced,
    contact_properties,
    mark_failed,
    mark_synced,
)
from shared.clients.hubspot import HubSpotClient
from shared.clients.hubspot_batch import BatchResult, InputOutcome
from shared.clients.hubspot_models import (
    BatchError,
    BatchUpdateInput,
    BatchUpsertInput,
    HubSpotObject,
)
from shared.errors import ProviderRejectedError

log = structlog.get_logger(__name__)

CONTACTS = "contacts"
NO_KEY = "no HubSpot id and no unique key: cannot be sent to HubSpot"


Outcome = InputOutcome[BatchUpdateInput | BatchUpsertInput, HubSpotObject]
I = TypeVar("I", BatchUpdateInput, BatchUpsertInput)  # noqa: E741 (an input type)


@dataclass
class PushOutcome:
    """Row ids created / updated in HubSpot, and those that failed with the reason."""

    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    # HubSpot id of each row that made it (for associations).
    hubspot_ids: dict[int, str] = field(default_factory=dict)
    # Leased kinds: rows that changed while on the wire, due again (push_leases.py).
    again: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Kind:
    """How one of our tables maps to a HubSpot object type."""

    table: str
    entity: str
    object_type: str
    properties: Callable[[asyncpg.Record], dict[str, str]]
    # (unique property, value) for an upsert, or None when the row has no key.
    unique: Callable[[asyncpg.Record], tuple[str, str] | None]
    # Rows sent only under a lease (contacts: push_leases.py); None for the others.
    leases: PushLeases | None = None


def contact_kind(leases: PushLeases | None = None) -> Kind:
    """Contacts, sent under ``leases`` (the defaults when None)."""

    def unique(row: asyncpg.Record) -> tuple[str, str] | None:
        return ("email", row["email"].lower()) if row["email"] else None

    return Kind("contacts", "contact", CONTACTS, contact_properties, unique, leases or PushLeases())


async def push_rows(
    hubspot: HubSpotClient, pool: asyncpg.Pool, kind: Kind, rows: Sequence[asyncpg.Record]
) -> PushOutcome:
    """Send up to 100 rows' current state; mark what HubSpot accepted, keep the rest pending.

    A batch HubSpot refuses whole with a 400 is split around the bad record (module
    docstring), so only the records HubSpot refuses are marked failed. For a leased
    kind the caller has claimed ``rows`` (:func:`push_leases.claim`); their leases are
    given back in the transaction that marks them, or deferred when the call fails.

    Raises:
        ProviderUnavailableError, QuotaExhaustedError, ProviderRejectedError (not 400):
            the whole call failed; nothing is marked, the rows stay pending (a leased
            kind's rows are due again in ``leases.retry_s``).
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
    calls: list[Awaitable[list[Outcome]]] = []
    if updates:
        calls.append(_send_splitting(hubspot.batch_update, kind.object_type, updates))
    if upserts:
        calls.append(_send_splitting(hubspot.batch_upsert, kind.object_type, upserts))
    try:
        outcomes = [item for result in await asyncio.gather(*calls) for item in result]
    except Exception:
        if kind.leases is not None:
            await _defer_quietly(pool, list(versions), kind.leases.retry_s)
        raise
    synced: list[Synced] = []
    for item in outcomes:
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
        if kind.leases is not None:
            await push_leases.lock(conn, list(versions))
        await mark_synced(conn, kind.table, kind.entity, synced)
        await mark_failed(conn, kind.table, outcome.failed)
        if kind.leases is not None:
            outcome.again = await push_leases.release(conn, versions)
    return outcome


async def _defer_quietly(pool: asyncpg.Pool, ids: list[int], retry_s: float) -> None:
    """Defer the leases of a failed call; if Postgres is away too, the leases simply
    run out (the contacts are due again then), so that error is not the one to raise."""
    try:
        await push_leases.defer(pool, ids, retry_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("hubspot.push_defer_failed", contacts=len(ids), error=str(exc))


async def _send_splitting(
    send: Callable[[str, Sequence[I]], Awaitable[BatchResult[HubSpotObject]]],
    object_type: str,
    inputs: Sequence[I],
) -> list[Outcome]:
    """One batch call and each input's outcome; on a whole-batch 400, the two halves
    again, down to the input HubSpot refuses (module docstring).

    Raises:
        ProviderRejectedError: any refusal but a 400 (401, 403, 404...): the whole call.
        ProviderUnavailableError, QuotaExhaustedError: as the client raises them.
    """
    try:
        result = await send(object_type, inputs)
    except ProviderRejectedError as exc:
        if exc.status != 400:
            raise
        if len(inputs) == 1:
            return [InputOutcome(inputs[0], False, None, _refusal(exc))]
        log.info("hubspot.batch_split", object_type=object_type, inputs=len(inputs))
        middle = len(inputs) // 2
        halves: list[list[Outcome]] = list(
            await asyncio.gather(
                _send_splitting(send, object_type, inputs[:middle]),
                _send_splitting(send, object_type, inputs[middle:]),
            )
        )
        return [*halves[0], *halves[1]]
    return list(result.outcomes(inputs))


def _refusal(exc: ProviderRejectedError) -> BatchError:
    """HubSpot's ``Error`` body (API.md §2.4: ``category``, ``message``) as the refused
    record's error; our own text when the body is not one."""
    try:
        error = BatchError.model_validate_json(exc.body)
    except ValueError:
        error = BatchError()
    return BatchError(
        category=error.category or "VALIDATION_ERROR", message=error.message or str(exc)
    )


async def push_contacts(
    pool: asyncpg.Pool,
    hubspot: HubSpotClient,
    contact_ids: Sequence[int],
    leases: PushLeases | None = None,
) -> PushOutcome:
    """Send up to 100 contacts' current state (read now, not taken from any event);
    the caller holds their leases (:func:`push_leases.claim`)."""
    rows = await pool.fetch(CONTACT_SQL, list(contact_ids))
    return await push_rows(hubspot, pool, contact_kind(leases), rows)
