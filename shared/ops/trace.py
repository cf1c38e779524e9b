"""Record lineage: one time-ordered story of a customer, contact or profile.

``trace(pool, query)`` answers "why is X stale?" from what crmsync records durably,
across the event path and the batch path:

=========================  ===============================================================
kind                       from
=========================  ===============================================================
``customer.created``       ``customers`` (W2: Shopify / Commerce7 buyers)
``order.received``         ``orders`` (its ``last_event_id``: the webhook that wrote it)
``event.handled``          ``processed_messages`` (consumer, event id, when committed)
``enrolment.*``            ``enrolments`` (started, upgraded / expired / revoked / cancelled)
``provider_action.*``      ``provider_actions`` (queued, then completed / failed / pending
                           with attempts and the last error) and their outbox events
``contact.created``        ``contacts`` (W3 / W4: the app's students)
``credits.changed``        ``audit_log`` (event id, reason, balances, entity version)
``credits.balance``        ``contact_credits`` (each type's balance and app version now)
``hubspot.pushed``         ``audit_log.synced_at`` (HubSpot accepted that version) and
                           ``contacts.hubspot_*`` (synced version, pending, error)
``booking.*``              ``bookings`` and their audit entries
``profile.*``/``package.*`` ``profiles``, ``crm_mappings``, ``packages`` (W1)
``run.<job>``              ``job_runs`` whose run window contains one of the record's
                           sync times (a batch sync, a bulk package run, an expiry run)
=========================  ===============================================================

The query is an email (customers, contacts and profiles with it), a customer id
(``customers.id``), an order id (``orders.id`` or the provider's order id), a profile
id, a contact's ``student_id`` or an event id. All matches are merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.ops import trace_sources as sources

# Longest query accepted, in characters.
MAX_QUERY_CHARS = 320


@dataclass(frozen=True)
class TraceEntry:
    """One step. ``time`` is UTC; ``kind`` a dotted name (table above); ``summary``
    one line for people; ``details`` the row's fields that matter (JSON-able)."""

    time: datetime
    kind: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceResult:
    """What ``query`` matched (``customers``, ``contacts``, ``profiles``: ids) and the
    entries, oldest first (ties keep the order they were gathered in)."""

    query: str
    matched: dict[str, list[str]]
    entries: list[TraceEntry]


async def trace(pool: asyncpg.Pool, query: str) -> TraceResult:
    """The story of whatever ``query`` names (see the module docstring).

    Raises:
        ValueError: an empty query, one over :data:`MAX_QUERY_CHARS`, or with NUL.
    """
    if not query or len(query) > MAX_QUERY_CHARS or "\x00" in query:
        raise ValueError(f"q must be 1 to {MAX_QUERY_CHARS} characters without NUL")
    query = query.strip()
    async with pool.acquire() as conn:
        anchors = await sources.resolve(conn, query)
        raw: list[sources.Entry] = []
        raw += await sources.customer_entries(conn, anchors.customers)
        raw += await sources.contact_entries(conn, anchors.contacts)
        raw += await sources.profile_entries(conn, anchors.profiles)
        raw += await sources.event_entries(conn, anchors.events)
        raw += await sources.run_entries(conn, [e[0] for e in raw if e[1] in sources.SYNC_KINDS])
    seen: set[tuple[Any, ...]] = set()
    entries = []
    for time, kind, summary, details in raw:
        key = (time, kind, summary)
        if key not in seen:
            seen.add(key)
            entries.append(TraceEntry(time, kind, summary, details))
    entries.sort(key=lambda e: e.time)
    return TraceResult(
        query=query,
        matched={
            "customers": [str(i) for i in anchors.customers],
            "contacts": [str(i) for i in anchors.contacts],
            "profiles": list(anchors.profiles),
        },
        entries=entries,
    )
