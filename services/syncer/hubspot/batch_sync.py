"""W4, the HubSpot batch sync: contacts, then mock exams, then bookings with associations.

Order matters (a booking's associations need its contact's and exam's HubSpot ids).
Every pending row (``hubspot_synced_version < change_version``, or a booking not yet
associated) is sent in batches of 100 (API.md §1: 100 inputs per batch call), several
batches in flight, paced by the client's rate limiter. Creation is by upsert on a
unique property, so a run interrupted anywhere (even between HubSpot's answer and our
commit) duplicates nothing when it runs again. A record HubSpot refuses (207) keeps
its error and stays pending for the next run; a batch whose whole call fails counts
its records as failed and the run goes on; a 401/403 or HubSpot's daily limit stops
the run and says why. Contacts are sent under the real-time pusher's leases
(``push_leases.py``): a contact another replica is sending right now (or whose failed
call waits for its retry) is left to it and not counted here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from services.syncer.hubspot import push_leases
from services.syncer.hubspot.contacts import Kind, PushOutcome, contact_kind, push_rows
from services.syncer.hubspot.push_leases import PushLeases
from services.syncer.hubspot.records import CONTACT_SQL
from shared.clients.hubspot import MAX_BATCH_INPUTS, HubSpotClient
from shared.clients.hubspot_models import to_property_value
from shared.errors import ProviderRejectedError, ProviderUnavailableError, QuotaExhaustedError
from shared.settings import SyncerSettings

log = structlog.get_logger(__name__)

# Batches in flight at once; the limiter, not this, sets the pace.
CONCURRENCY = 4
# First errors kept in the run's totals.
MAX_ERRORS = 20

_PENDING = {
    "contacts": "hubspot_synced_version < change_version",
    "mock_exams": "hubspot_synced_version < change_version",
    "bookings": "(hubspot_synced_version < change_version OR NOT hubspot_associated)",
}
_ROWS = {
    "contacts": CONTACT_SQL,
    "mock_exams": "SELECT * FROM mock_exams WHERE id = ANY($1::bigint[]) ORDER BY id",
    "bookings": """
        SELECT b.*, c.hubspot_id AS contact_hubspot_id, m.hubspot_id AS exam_hubspot_id,
               c.student_id, m.exam_ref
        FROM bookings b JOIN contacts c ON c.id = b.contact_id
        JOIN mock_exams m ON m.id = b.mock_exam_id
        WHERE b.id = ANY($1::bigint[]) ORDER BY b.id
    """,
}


@dataclass
class ObjectTotals:
    created: int = 0
    updated: int = 0
    failed: int = 0


@dataclass
class SyncTotals:
    """The run's summary: created / updated / failed per object, and the first errors."""

    contacts: ObjectTotals = field(default_factory=ObjectTotals)
    mock_exams: ObjectTotals = field(default_factory=ObjectTotals)
    bookings: ObjectTotals = field(default_factory=ObjectTotals)
    associations: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def obj(t: ObjectTotals) -> dict[str, int]:
            return {"created": t.created, "updated": t.updated, "failed": t.failed}

        return {
            "contacts": obj(self.contacts),
            "mockExams": obj(self.mock_exams),
            "bookings": obj(self.bookings),
            "associations": self.associations,
            "errors": self.errors,
        }


class StopRun(Exception):
    """The run cannot go on (bad token, missing scope, daily limit)."""


def _exam_kind(settings: SyncerSettings) -> Kind:
    def props(row: asyncpg.Record) -> dict[str, str]:
        return {
            "exam_ref": row["exam_ref"],
            "exam_name": to_property_value(row["name"]),
            "exam_date": to_property_value(row["exam_date"]),
            "total_bookings": to_property_value(row["total_bookings"]),
        }

    return Kind(
        "mock_exams", "mock_exam", settings.hubspot_mock_exam_object_type, props,
        lambda row: ("exam_ref", row["exam_ref"]),
    )  # fmt: skip


def _booking_kind(settings: SyncerSettings) -> Kind:
    def props(row: asyncpg.Record) -> dict[str, str]:
        return {
            "booking_ref": row["booking_ref"],
            "status": row["status"],
            "attended": to_property_value(row["attended"]),
            "student_id": to_property_value(row["student_id"]),
            "exam_ref": row["exam_ref"],
        }

    return Kind(
        "bookings", "booking", settings.hubspot_booking_object_type,
        lambda row: {k: v for k, v in props(row).items() if v != ""},
        lambda row: ("booking_ref", row["booking_ref"]),
    )  # fmt: skip


Progress = Callable[[dict[str, Any]], Awaitable[None]]


class BatchSync:
    """One run. ``await BatchSync(...).run()`` returns the totals.

    Args:
        on_progress: awaited with the totals so far after every batch (the run row).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        hubspot: HubSpotClient,
        settings: SyncerSettings,
        *,
        on_progress: Progress | None = None,
        concurrency: int = CONCURRENCY,
        objects: Collection[str] = ("contacts", "mock_exams", "bookings"),
        batch_size: int = MAX_BATCH_INPUTS,
    ) -> None:
        self.pool = pool
        self.hubspot = hubspot
        self.settings = settings
        self.on_progress = on_progress
        self.concurrency = concurrency
        self.objects = set(objects)
        self.batch_size = min(batch_size, MAX_BATCH_INPUTS)
        self.totals = SyncTotals()
        self.leases = PushLeases.from_settings(settings)

    async def run(self) -> SyncTotals:
        """Sync the chosen objects, always in dependency order.

        Raises:
            StopRun: HubSpot refused the whole run (401/403, daily limit).
        """
        if "contacts" in self.objects:
            await self._sync(contact_kind(self.leases), self.totals.contacts)
        if "mock_exams" in self.objects:
            await self._sync(_exam_kind(self.settings), self.totals.mock_exams)
        if "bookings" in self.objects:
            await self._sync(_booking_kind(self.settings), self.totals.bookings, associate=True)
        return self.totals

    async def _pages(self, table: str) -> list[list[int]]:
        ids = [
            r["id"]
            for r in await self.pool.fetch(
                f"SELECT id FROM {table} WHERE {_PENDING[table]} ORDER BY id"  # noqa: S608
            )
        ]
        size = self.batch_size
        return [ids[i : i + size] for i in range(0, len(ids), size)]

    async def _sync(self, kind: Kind, totals: ObjectTotals, *, associate: bool = False) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        stop: list[BaseException] = []

        async def one(page: list[int]) -> None:
            async with slots:
                if stop:
                    return
                try:
                    await self._page(kind, page, totals, associate)
                except (ProviderRejectedError, QuotaExhaustedError) as exc:
                    stop.append(exc)

        await asyncio.gather(*(one(page) for page in await self._pages(kind.table)))
        if stop:
            raise StopRun(str(stop[0])) from stop[0]

    async def _page(
        self, kind: Kind, ids: list[int], totals: ObjectTotals, associate: bool
    ) -> None:
        if kind.leases is not None:
            # Contacts another sender holds are on the wire (or waiting to be retried)
            # already: sending them here too could overtake a later state.
            ids = await push_leases.claim(self.pool, ids, kind.leases, undue=True)
        rows = await self.pool.fetch(_ROWS[kind.table], ids)
        pending = [r for r in rows if r["hubspot_synced_version"] < r["change_version"]]
        if kind.leases is not None and len(pending) < len(rows):
            sent = {r["id"] for r in pending}
            await push_leases.give_back(
                self.pool, {r["id"]: r["change_version"] for r in rows if r["id"] not in sent}
            )
        try:
            outcome = (
                await push_rows(self.hubspot, self.pool, kind, pending)
                if pending
                else PushOutcome()
            )
        except ProviderUnavailableError as exc:
            totals.failed += len(pending)
            self._error(f"{kind.table} batch of {len(pending)}: {exc}")
            return
        totals.created += len(outcome.created)
        totals.updated += len(outcome.updated)
        totals.failed += len(outcome.failed)
        for row_id, message in list(outcome.failed.items())[:3]:
            self._error(f"{kind.entity} {row_id}: {message}")
        if associate:
            known = {r["id"]: r["hubspot_id"] for r in rows if r["hubspot_id"]}
            known.update(outcome.hubspot_ids)
            await self._associate(kind, [r for r in rows if r["id"] in known], known)
        if self.on_progress is not None:
            await self.on_progress(self.totals.as_dict())

    async def _associate(
        self, kind: Kind, rows: list[asyncpg.Record], hubspot_ids: dict[int, str]
    ) -> None:
        """Default associations booking→contact and booking→mock exam (Associations v4,
        batch; creating one that exists is harmless, API.md §5)."""
        todo = [
            r for r in rows
            if not r["hubspot_associated"] and r["contact_hubspot_id"] and r["exam_hubspot_id"]
        ]  # fmt: skip
        for row in rows:
            if not (row["contact_hubspot_id"] and row["exam_hubspot_id"]):
                self._error(f"booking {row['id']}: contact or mock exam not in HubSpot yet")
        if not todo:
            return
        to_contacts = [(hubspot_ids[r["id"]], r["contact_hubspot_id"]) for r in todo]
        to_exams = [(hubspot_ids[r["id"]], r["exam_hubspot_id"]) for r in todo]
        try:
            contact_result, exam_result = await asyncio.gather(
                self.hubspot.batch_associate_default(kind.object_type, "contacts", to_contacts),
                self.hubspot.batch_associate_default(
                    kind.object_type, self.settings.hubspot_mock_exam_object_type, to_exams
                ),
            )
        except ProviderUnavailableError as exc:
            self._error(f"associations for {len(todo)} bookings: {exc}")
            return
        ok_contacts = {o.input for o in contact_result.outcomes(to_contacts) if o.ok}
        ok_exams = {o.input for o in exam_result.outcomes(to_exams) if o.ok}
        done = [
            r["id"]
            for r, c, e in zip(todo, to_contacts, to_exams, strict=True)
            if c in ok_contacts and e in ok_exams
        ]
        await self.pool.execute(
            "UPDATE bookings SET hubspot_associated = true WHERE id = ANY($1::bigint[])", done
        )
        self.totals.associations += 2 * len(done)
        if len(done) < len(todo):
            self._error(f"{len(todo) - len(done)} bookings not associated; retried next run")

    def _error(self, message: str) -> None:
        log.warning("hubspot_sync.error", error=message)
        if len(self.totals.errors) < MAX_ERRORS:
            self.totals.errors.append(message)
