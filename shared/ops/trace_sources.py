"""The tables :func:`shared.ops.trace.trace` reads, one collector per record kind.

Each collector returns ``(time, kind, summary, details)`` tuples; times are the rows'
own timestamps (UTC). See :mod:`shared.ops.trace` for what each kind means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

Entry = tuple[datetime, str, str, dict[str, Any]]
# Kinds whose time is when crmsync synced the record: the runs around them touched it.
SYNC_KINDS = frozenset({"hubspot.pushed", "package.synced", "profile.synced", "enrolment.expired"})
_BIGINT = re.compile(r"[0-9]{1,18}")


@dataclass
class Anchors:
    """What a query names: customers.id, contacts.id, profile ids, event ids."""

    customers: list[int] = field(default_factory=list)
    contacts: list[int] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def _add(items: list[Any], values: list[Any]) -> None:
    for value in values:
        if value is not None and value not in items:
            items.append(value)


async def _col(conn: asyncpg.Connection, sql: str, *args: Any) -> list[Any]:
    return [r[0] for r in await conn.fetch(sql, *args)]


async def resolve(conn: asyncpg.Connection, query: str) -> Anchors:
    """Every record ``query`` names, then the records sharing their emails."""
    a = Anchors()
    number = int(query) if _BIGINT.fullmatch(query) else None
    if "@" in query:
        low = query.lower()
        _add(a.customers, await _col(conn, "SELECT id FROM customers WHERE lower(email) = $1", low))
        _add(a.contacts, await _col(conn, "SELECT id FROM contacts WHERE lower(email) = $1", low))
        _add(
            a.profiles,
            await _col(conn, "SELECT profile_id FROM profiles WHERE lower(email) = $1", low),
        )
    if number is not None:
        _add(a.customers, await _col(conn, "SELECT id FROM customers WHERE id = $1", number))
        _add(a.customers, await _col(conn, "SELECT customer_id FROM orders WHERE id = $1", number))
    sql_by_text: list[tuple[list[Any], str]] = [
        (a.customers, "SELECT customer_id FROM orders WHERE external_id = $1"),
        (a.customers, "SELECT id FROM customers WHERE external_id = $1"),
        (a.customers, "SELECT customer_id FROM orders WHERE last_event_id = $1"),
        (a.profiles, "SELECT profile_id FROM profiles WHERE profile_id = $1"),
        (a.contacts, "SELECT id FROM contacts WHERE student_id = $1"),
        (
            a.contacts,
            "SELECT entity_id FROM audit_log WHERE event_id = $1 AND entity = 'contact'"
            " UNION SELECT b.contact_id FROM audit_log l JOIN bookings b ON b.id = l.entity_id"
            " WHERE l.event_id = $1 AND l.entity = 'booking'",
        ),
    ]
    for target, sql in sql_by_text:
        _add(target, await _col(conn, sql, query))
    action = re.fullmatch(r"provider-action-([0-9]{1,18})(?:-retry-.*)?", query)
    if action:
        sql = "SELECT customer_id FROM provider_actions WHERE id = $1"
        _add(a.customers, await _col(conn, sql, int(action[1])))
    _add(
        a.events,
        await _col(
            conn,
            "SELECT event_id FROM processed_messages WHERE event_id = $1"
            " UNION SELECT event_id FROM outbox WHERE event_id = $1",
            query,
        ),
    )
    emails = await _col(
        conn,
        "SELECT lower(email) FROM customers WHERE id = ANY($1) AND email IS NOT NULL"
        " UNION SELECT lower(email) FROM contacts WHERE id = ANY($2) AND email IS NOT NULL"
        " UNION SELECT lower(email) FROM profiles WHERE profile_id = ANY($3) AND email IS NOT NULL",
        a.customers,
        a.contacts,
        a.profiles,
    )
    if emails:
        sql = "SELECT id FROM customers WHERE lower(email) = ANY($1)"
        _add(a.customers, await _col(conn, sql, emails))
        _add(
            a.contacts,
            await _col(conn, "SELECT id FROM contacts WHERE lower(email) = ANY($1)", emails),
        )
        sql = "SELECT profile_id FROM profiles WHERE lower(email) = ANY($1)"
        _add(a.profiles, await _col(conn, sql, emails))
    return a


async def handled(conn: asyncpg.Connection, event_ids: list[str]) -> list[Entry]:
    """``event.handled`` per ``processed_messages`` row of ``event_ids``."""
    rows = await conn.fetch(
        "SELECT consumer, event_id, processed_at FROM processed_messages"
        " WHERE event_id = ANY($1::text[])",
        [e for e in event_ids if e],
    )
    return [
        (
            r["processed_at"],
            "event.handled",
            f"{r['consumer']} applied event {r['event_id']}",
            {"consumer": r["consumer"], "eventId": r["event_id"]},
        )
        for r in rows
    ]


async def customer_entries(conn: asyncpg.Connection, ids: list[int]) -> list[Entry]:
    """Customers, their orders, enrolments, provider actions and those actions' events."""
    if not ids:
        return []
    out: list[Entry] = []
    for r in await conn.fetch("SELECT * FROM customers WHERE id = ANY($1)", ids):
        summary = f"customer {r['id']} ({r['provider']} {r['external_id']}, {r['email']})"
        details = {"customerId": r["id"], "provider": r["provider"], "isMember": r["is_member"]}
        out.append((r["created_at"], "customer.created", summary, details))
    orders = await conn.fetch("SELECT * FROM orders WHERE customer_id = ANY($1)", ids)
    for r in orders:
        details = {
            "orderId": r["id"],
            "externalId": r["external_id"],
            "financialStatus": r["financial_status"],
            "totalMinor": r["total_minor"],
            "currency": r["currency"],
            "eventId": r["last_event_id"],
        }
        summary = (
            f"order {r['provider']} {r['external_id']} {r['financial_status']}"
            f" {r['total_minor']} {r['currency']} (minor units), event {r['last_event_id']}"
        )
        out.append((r["created_at"], "order.received", summary, details))
        if r["updated_at"] > r["created_at"]:
            out.append((r["updated_at"], "order.updated", summary, details))
    out += await handled(conn, [r["last_event_id"] for r in orders])
    enrolments = await conn.fetch(
        "SELECT e.*, t.name AS tier FROM enrolments e JOIN tiers t ON t.id = e.tier_id"
        " WHERE e.customer_id = ANY($1)",
        ids,
    )
    for r in enrolments:
        details = {
            "enrolmentId": r["id"],
            "tier": r["tier"],
            "status": r["status"],
            "orderId": r["source_order_id"],
            "expiresAt": r["expires_at"].isoformat(),
        }
        summary = f"enrolled in {r['tier']} (order {r['source_order_id']})"
        out.append((r["started_at"], "enrolment.started", summary, details))
        if r["ended_at"] is not None:
            summary = f"enrolment in {r['tier']} {r['status']}"
            out.append((r["ended_at"], f"enrolment.{r['status']}", summary, details))
    actions = await conn.fetch("SELECT * FROM provider_actions WHERE customer_id = ANY($1)", ids)
    for r in actions:
        details = {
            "actionId": r["id"],
            "kind": r["kind"],
            "provider": r["provider"],
            "status": r["status"],
            "attempts": r["attempts"],
            "lastError": r["last_error"],
        }
        label = f"provider action {r['id']} {r['kind']} at {r['provider']}"
        out.append((r["created_at"], "provider_action.queued", f"{label} queued", details))
        if r["status"] == "completed" and r["completed_at"] is not None:
            when, kind = r["completed_at"], "provider_action.completed"
        elif r["status"] == "failed" or r["attempts"] > 0:
            when, kind = r["updated_at"], f"provider_action.{r['status']}"
        else:
            continue
        error = f": {r['last_error']}" if r["last_error"] and r["status"] != "completed" else ""
        out.append(
            (when, kind, f"{label} {r['status']} after {r['attempts']} attempt(s){error}", details)
        )
    if actions:
        patterns = [f"provider-action-{r['id']}" for r in actions]
        rows = await conn.fetch(
            "SELECT event_id, routing_key, published_at FROM outbox WHERE published_at IS NOT NULL"
            " AND (event_id = ANY($1) OR event_id LIKE ANY($2))",
            patterns,
            [p + "-retry-%" for p in patterns],
        )
        for r in rows:
            summary = f"event {r['event_id']} published to {r['routing_key']}"
            out.append((r["published_at"], "event.published", summary, {"eventId": r["event_id"]}))
    return out


async def contact_entries(conn: asyncpg.Connection, ids: list[int]) -> list[Entry]:
    """Contacts, their balances, bookings, audit entries and HubSpot state."""
    if not ids:
        return []
    out: list[Entry] = []
    for r in await conn.fetch("SELECT * FROM contacts WHERE id = ANY($1)", ids):
        details = {
            "contactId": r["id"],
            "studentId": r["student_id"],
            "hubspotId": r["hubspot_id"],
            "changeVersion": r["change_version"],
            "hubspotSyncedVersion": r["hubspot_synced_version"],
            "hubspotError": r["hubspot_error"],
        }
        out.append(
            (r["created_at"], "contact.created", f"contact {r['id']} ({r['email']})", details)
        )
        if r["hubspot_synced_version"] < r["change_version"]:
            why = f": {r['hubspot_error']}" if r["hubspot_error"] else " (waiting for a push)"
            summary = (
                f"HubSpot behind: has version {r['hubspot_synced_version']}"
                f" of {r['change_version']}{why}"
            )
            out.append((r["updated_at"], "hubspot.pending", summary, details))
    for r in await conn.fetch("SELECT * FROM contact_credits WHERE contact_id = ANY($1)", ids):
        summary = f"{r['credit_type']} = {r['balance']} (app version {r['version']}, {r['reason']})"
        details = {
            "contactId": r["contact_id"],
            "creditType": r["credit_type"],
            "balance": r["balance"],
            "version": r["version"],
        }
        out.append((r["updated_at"], "credits.balance", summary, details))
    bookings = await conn.fetch("SELECT * FROM bookings WHERE contact_id = ANY($1)", ids)
    for r in bookings:
        details = {"bookingId": r["id"], "bookingRef": r["booking_ref"], "status": r["status"]}
        out.append((r["created_at"], "booking.created", f"booking {r['booking_ref']}", details))
    audit = await conn.fetch(
        "SELECT * FROM audit_log WHERE (entity = 'contact' AND entity_id = ANY($1))"
        " OR (entity = 'booking' AND entity_id = ANY($2))",
        ids,
        [r["id"] for r in bookings],
    )
    for r in audit:
        kind = (
            "credits.changed"
            if r["action"] == "credits_changed"
            else f"{r['entity']}.{r['action']}"
        )
        details = {
            "entity": r["entity"],
            "entityId": r["entity_id"],
            "eventId": r["event_id"],
            "entityVersion": r["entity_version"],
            **(r["details"] or {}),
        }
        summary = f"{r['entity']} {r['entity_id']} {r['action']} -> version {r['entity_version']}"
        out.append((r["created_at"], kind, f"{summary}, event {r['event_id']}", details))
        if r["synced_at"] is not None:
            summary = (
                f"HubSpot accepted {r['entity']} {r['entity_id']} version {r['entity_version']}"
            )
            out.append((r["synced_at"], "hubspot.pushed", summary, details))
    out += await handled(conn, [r["event_id"] for r in audit])
    return out


async def profile_entries(conn: asyncpg.Connection, ids: list[str]) -> list[Entry]:
    """Profiles (W1): logins, the CRM mapping, packages read, refreshes."""
    if not ids:
        return []
    out: list[Entry] = []
    for r in await conn.fetch("SELECT * FROM profiles WHERE profile_id = ANY($1)", ids):
        details = {"profileId": r["profile_id"]}
        out.append((r["created_at"], "profile.created", f"profile {r['profile_id']}", details))
        if r["last_login_at"] is not None:
            out.append((r["last_login_at"], "profile.login", "last login", details))
    for r in await conn.fetch("SELECT * FROM crm_mappings WHERE profile_id = ANY($1)", ids):
        details = {
            "profileId": r["profile_id"],
            "status": r["status"],
            "crmCustomerId": r["crm_customer_id"],
            "method": r["method"],
            "unmatchedReason": r["unmatched_reason"],
        }
        if r["matched_at"] is not None:
            summary = f"matched to CRM customer {r['crm_customer_id']} by {r['method']}"
            out.append((r["matched_at"], "profile.matched", summary, details))
        else:
            summary = f"unmatched: {r['unmatched_reason']}"
            out.append((r["last_attempt_at"], "profile.unmatched", summary, details))
        if r["synced_at"] is not None:
            out.append((r["synced_at"], "profile.synced", "packages read from the CRM", details))
    for r in await conn.fetch("SELECT * FROM packages WHERE profile_id = ANY($1)", ids):
        details = {
            "crmPackageId": r["crm_package_id"],
            "name": r["name"],
            "status": r["status"],
            "remaining": str(r["remaining"]) if r["remaining"] is not None else None,
        }
        summary = f"package {r['crm_package_id']} {r['name']} {r['status']}"
        out.append((r["synced_at"], "package.synced", summary, details))
        if r["removed_at"] is not None:
            out.append((r["removed_at"], "package.removed", summary, details))
    for r in await conn.fetch("SELECT * FROM package_refreshes WHERE profile_id = ANY($1)", ids):
        details = {"requestId": r["request_id"], "status": r["status"], "error": r["error"]}
        summary = f"refresh {r['request_id']} {r['status']}"
        out.append((r["requested_at"], "package.refresh", summary, details))
    return out


async def event_entries(conn: asyncpg.Connection, event_ids: list[str]) -> list[Entry]:
    """An event id asked for directly: where it was handled and published."""
    if not event_ids:
        return []
    out = await handled(conn, event_ids)
    rows = await conn.fetch(
        "SELECT event_id, routing_key, published_at FROM outbox"
        " WHERE event_id = ANY($1) AND published_at IS NOT NULL",
        event_ids,
    )
    for r in rows:
        summary = f"event {r['event_id']} published to {r['routing_key']}"
        out.append((r["published_at"], "event.published", summary, {"eventId": r["event_id"]}))
    return out


async def run_entries(conn: asyncpg.Connection, times: list[datetime]) -> list[Entry]:
    """The job runs whose window (started .. finished, or now) holds one of ``times``."""
    if not times:
        return []
    rows = await conn.fetch(
        "SELECT DISTINCT r.id, r.job, r.status, r.started_at, r.finished_at, r.totals, r.error"
        " FROM job_runs r JOIN unnest($1::timestamptz[]) AS t(at)"
        " ON r.started_at <= t.at AND t.at <= coalesce(r.finished_at, now())",
        times,
    )
    return [
        (
            r["started_at"],
            f"run.{r['job']}",
            f"run {r['id']} of {r['job']} {r['status']}",
            {
                "runId": r["id"],
                "job": r["job"],
                "status": r["status"],
                "totals": r["totals"],
                "error": r["error"],
                "finishedAt": r["finished_at"].isoformat() if r["finished_at"] else None,
            },
        )
        for r in rows
    ]
