"""Drift check: do HubSpot's contacts hold the credit balances Postgres says they do?

A contact is checked when Postgres believes HubSpot has its current state
(``hubspot_synced_version >= change_version``) and it has at least one balance;
contacts still waiting for a push are counted as ``pending`` and not read. Contacts
are read back in batches of up to 100 (``POST /crm/v3/objects/contacts/batch/read``,
API.md §3.5) through the syncer's :class:`HubSpotClient`, so every read is paced by
the same rate budget as the pushes (``CRMSYNC_HUBSPOT_RATE_PER_10S``). A contact with
a HubSpot id is read by id, one without by ``email`` (HubSpot's unique contact
property). Each of its balances is compared with the HubSpot property of the same name
(numerically: ``"3"`` equals ``3``); HubSpot not knowing the record is ``missing``.
No database connection is held while HubSpot answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from shared.clients.hubspot import HubSpotClient
from shared.clients.hubspot_models import HubSpotObject
from shared.messages.credits import CREDIT_FIELDS

CONTACTS = "contacts"
# Drifted records kept on the run row (the first ones found).
MAX_DRIFTS_KEPT = 20

_CONTACTS_SQL = """
SELECT c.id, c.email, c.hubspot_id, c.change_version, c.hubspot_synced_version,
       jsonb_object_agg(cc.credit_type, cc.balance) AS credits
FROM contacts c JOIN contact_credits cc ON cc.contact_id = c.id
WHERE c.id > $1
GROUP BY c.id ORDER BY c.id LIMIT $2
"""


@dataclass
class DriftTotals:
    """The run's counters (``job_runs.totals``), camelCase in :meth:`as_dict`."""

    checked: int = 0
    equal: int = 0
    drifted: int = 0
    missing: int = 0
    pending: int = 0
    repairs_queued: int = 0
    drifts: list[dict[str, Any]] = field(default_factory=list)
    # Contact ids found drifted or missing (for ``repair``); not on the run row.
    to_repair: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "equal": self.equal,
            "drifted": self.drifted,
            "missing": self.missing,
            "pending": self.pending,
            "repairsQueued": self.repairs_queued,
            "drifts": self.drifts,
        }

    def keep(self, record: dict[str, Any]) -> None:
        if len(self.drifts) < MAX_DRIFTS_KEPT:
            self.drifts.append(record)


def _same(balance: int, value: str | None) -> bool:
    if value is None or value == "":
        return False
    try:
        return Decimal(value) == Decimal(balance)
    except InvalidOperation:
        return False


def compare(row: asyncpg.Record, found: HubSpotObject | None) -> dict[str, Any] | None:
    """The drift of one contact, or None when HubSpot holds every balance.

    Shape: ``{"contactId", "email", "hubspotId", "kind": "drifted" | "missing",
    "fields": {"sj_credits": {"postgres": 4, "hubspot": "3"}}}`` (``hubspot`` None when
    HubSpot has no value).
    """
    base = {"contactId": row["id"], "email": row["email"], "hubspotId": row["hubspot_id"]}
    credits: dict[str, int] = row["credits"]
    if found is None:
        return {**base, "kind": "missing", "fields": {}}
    fields = {
        name: {"postgres": balance, "hubspot": found.properties.get(name)}
        for name, balance in sorted(credits.items())
        if not _same(balance, found.properties.get(name))
    }
    if not fields:
        return None
    return {**base, "hubspotId": found.id, "kind": "drifted", "fields": fields}


async def check_page(
    pool: asyncpg.Pool, hubspot: HubSpotClient, after_id: int, limit: int, totals: DriftTotals
) -> int | None:
    """Check the next ``limit`` contacts with balances after ``after_id``; the last id
    seen, or None when there are no more. Adds to ``totals``.

    Raises:
        as :meth:`HubSpotClient.batch_read` (ProviderUnavailableError: retried;
        ProviderRejectedError, QuotaExhaustedError: the run cannot go on).
    """
    rows = await pool.fetch(_CONTACTS_SQL, after_id, limit)
    if not rows:
        return None
    synced = [r for r in rows if r["hubspot_synced_version"] >= r["change_version"]]
    totals.pending += len(rows) - len(synced)
    by_id = [r for r in synced if r["hubspot_id"]]
    by_email = [r for r in synced if not r["hubspot_id"] and r["email"]]
    totals.pending += len(synced) - len(by_id) - len(by_email)  # no key: never pushable
    found: dict[int, HubSpotObject | None] = {}
    if by_id:
        result = await hubspot.batch_read(CONTACTS, [r["hubspot_id"] for r in by_id], CREDIT_FIELDS)
        records = {obj.id: obj for obj in result.results}
        found |= {r["id"]: records.get(r["hubspot_id"]) for r in by_id}
    if by_email:
        emails = [r["email"].lower() for r in by_email]
        result = await hubspot.batch_read(CONTACTS, emails, CREDIT_FIELDS, id_property="email")
        records = {(obj.properties.get("email") or "").lower(): obj for obj in result.results}
        found |= {r["id"]: records.get(r["email"].lower()) for r in by_email}
    for row in [*by_id, *by_email]:
        totals.checked += 1
        drift = compare(row, found[row["id"]])
        if drift is None:
            totals.equal += 1
            continue
        if drift["kind"] == "missing":
            totals.missing += 1
        else:
            totals.drifted += 1
        totals.keep(drift)
        totals.to_repair.append(row["id"])
    last: int = rows[-1]["id"]
    return last


def repair_ids(totals: DriftTotals) -> Sequence[int]:
    """The contacts whose push ``repair=true`` queues again."""
    return list(dict.fromkeys(totals.to_repair))
