"""Read what Postgres, the CRM database, the sandbox and RabbitMQ hold, for the judge.

:func:`gather` builds one phase's :class:`~_chaos_judge.Facts` from the ids in its
ledger; :func:`pending_work` says what is still in flight (queues, outbox, provider
actions, HubSpot pushes), which :func:`wait_quiet` polls until nothing is.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
from _chaos_infra import RabbitNode
from _chaos_judge import Facts
from _chaos_load import API_KEY_NAME, COMMERCE7_TENANT, Item


async def _sandbox(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


def _ids(items: list[Item], stream: str, key: str) -> list[str]:
    return sorted({i.info[key] for i in items if i.stream == stream})


async def gather(db: asyncpg.Connection, crm_dsn: str, sandbox: str, items: list[Item]) -> Facts:
    """Everything the judge needs about the phase whose ledger is ``items``."""
    f = Facts()
    for r in await db.fetch("SELECT name, shopify_tag, commerce7_club_id FROM tiers"):
        f.tiers[r["name"]] = {
            "shopify_tag": r["shopify_tag"],
            "commerce7_club_id": r["commerce7_club_id"],
        }
    await _orders(db, f, items)
    event_ids = [
        f"{API_KEY_NAME}:{i.info['key']}"
        for i in items
        if i.stream in ("credits", "bookings", "logins")
    ]
    f.processed = {
        (r["consumer"], r["event_id"])
        for r in await db.fetch(
            "SELECT consumer, event_id FROM processed_messages WHERE event_id = ANY($1)", event_ids
        )
    }
    await _credits_and_bookings(db, f, items, event_ids)
    await _profiles(db, crm_dsn, f, items)
    async with aiohttp.ClientSession() as session:
        for c in (await _sandbox(session, f"{sandbox}/_sandbox/shopify/customers"))["customers"]:
            f.shopify_tags[str(c["id"])] = list(c["tags"])
        url = f"{sandbox}/_sandbox/commerce7/{COMMERCE7_TENANT}/club-memberships"
        for m in (await _sandbox(session, url))["clubMemberships"]:
            f.c7_memberships.setdefault(m["customerId"], []).append(m)
        for c in (await _sandbox(session, f"{sandbox}/_sandbox/hubspot/objects/contacts"))[
            "results"
        ]:
            email = (c["properties"].get("email") or "").lower()
            f.hubspot.setdefault(email, []).append(c["properties"])
        f.requests = (await _sandbox(session, f"{sandbox}/_sandbox/requests"))["requests"]
    return f


async def _orders(db: asyncpg.Connection, f: Facts, items: list[Item]) -> None:
    for provider in ("shopify", "commerce7"):
        customers = _ids(items, provider, "customer")
        orders = _ids(items, provider, "order")
        for r in await db.fetch(
            "SELECT external_id, count(*) AS n FROM customers"
            " WHERE provider = $1 AND external_id = ANY($2) GROUP BY 1",
            provider,
            customers,
        ):
            f.customer_rows[(provider, r["external_id"])] = r["n"]
        for r in await db.fetch(
            "SELECT external_id, count(*) AS n FROM orders"
            " WHERE provider = $1 AND external_id = ANY($2) GROUP BY 1",
            provider,
            orders,
        ):
            f.order_rows[(provider, r["external_id"])] = r["n"]
        for r in await db.fetch(
            """
            SELECT c.external_id AS customer, e.id, e.status, t.name AS tier,
                   o.external_id AS order_id
            FROM enrolments e JOIN customers c ON c.id = e.customer_id
            JOIN tiers t ON t.id = e.tier_id LEFT JOIN orders o ON o.id = e.source_order_id
            WHERE c.provider = $1 AND c.external_id = ANY($2) ORDER BY e.id
            """,
            provider,
            customers,
        ):
            f.enrolments.setdefault((provider, r["customer"]), []).append(
                {"id": r["id"], "status": r["status"], "tier": r["tier"], "order": r["order_id"]}
            )
        for r in await db.fetch(
            """
            SELECT c.external_id AS customer, a.enrolment_id, a.kind, a.status
            FROM provider_actions a JOIN customers c ON c.id = a.customer_id
            WHERE c.provider = $1 AND c.external_id = ANY($2)
            """,
            provider,
            customers,
        ):
            f.actions.setdefault((provider, r["customer"]), []).append(
                {"enrolment": r["enrolment_id"], "kind": r["kind"], "status": r["status"]}
            )


async def _credits_and_bookings(
    db: asyncpg.Connection, f: Facts, items: list[Item], event_ids: list[str]
) -> None:
    students = sorted(
        {
            c["contact"]["studentId"]
            for i in items
            if i.stream == "credits"
            for c in i.info["changes"]
        }
    )
    contacts = await db.fetch(
        "SELECT id, student_id, email FROM contacts WHERE student_id = ANY($1)", students
    )
    student_of = {r["id"]: r["student_id"] for r in contacts}
    f.contact_emails = {r["student_id"]: r["email"] or "" for r in contacts}
    for r in await db.fetch(
        "SELECT contact_id, credit_type, balance, version FROM contact_credits"
        " WHERE contact_id = ANY($1)",
        list(student_of),
    ):
        f.credits.setdefault(student_of[r["contact_id"]], {})[r["credit_type"]] = (
            r["balance"],
            r["version"],
        )
    refs = _ids(items, "bookings", "booking")
    booking_ids: dict[int, str] = {}
    for r in await db.fetch(
        "SELECT id, booking_ref, status, version, attended FROM bookings"
        " WHERE booking_ref = ANY($1)",
        refs,
    ):
        booking_ids[r["id"]] = r["booking_ref"]
        f.bookings[r["booking_ref"]] = dict(r)
    for r in await db.fetch(
        "SELECT id, entity, entity_id, event_id, details FROM audit_log WHERE event_id = ANY($1)",
        event_ids,
    ):
        key = (student_of if r["entity"] == "contact" else booking_ids).get(r["entity_id"], "?")
        details = r["details"] if isinstance(r["details"], dict) else json.loads(r["details"])
        f.audit.append(
            {
                "id": r["id"],
                "entity": r["entity"],
                "event_id": r["event_id"],
                "key": key,
                "details": details,
            }
        )
    for r in await db.fetch(
        """
        SELECT m.exam_ref, m.total_bookings,
               (SELECT count(*) FROM bookings b WHERE b.mock_exam_id = m.id
                AND b.status = 'confirmed') AS confirmed
        FROM mock_exams m WHERE m.exam_ref = ANY($1)
        """,
        _ids(items, "bookings", "exam"),
    ):
        f.exams[r["exam_ref"]] = (r["total_bookings"], r["confirmed"])


async def _profiles(db: asyncpg.Connection, crm_dsn: str, f: Facts, items: list[Item]) -> None:
    rows = await db.fetch(
        """
        SELECT p.profile_id, p.last_login_at, m.status, m.crm_customer_id,
               (SELECT count(*) FROM packages k WHERE k.profile_id = p.profile_id
                AND k.removed_at IS NULL) AS packages
        FROM profiles p LEFT JOIN crm_mappings m ON m.profile_id = p.profile_id
        WHERE p.profile_id = ANY($1)
        """,
        _ids(items, "logins", "profile"),
    )
    crm = await asyncpg.connect(crm_dsn)
    try:
        counts = dict(
            await crm.fetch(
                "SELECT customer_id::text, count(*) FROM crm_packages"
                " WHERE customer_id::text = ANY($1) GROUP BY 1",
                [r["crm_customer_id"] for r in rows if r["crm_customer_id"]],
            )
        )
    finally:
        await crm.close()
    for r in rows:
        f.profiles[r["profile_id"]] = {
            "last_login_at": r["last_login_at"],
            "status": r["status"],
            "customer": r["crm_customer_id"],
            "packages": r["packages"],
            "crm_packages": counts.get(r["crm_customer_id"], 0),
        }


async def pending_work(db: asyncpg.Connection, rabbit: RabbitNode) -> dict[str, int]:
    """What is still to do: messages per queue (dead-letter queues aside), unpublished
    outbox rows, open provider actions, contacts HubSpot does not have yet."""
    left: dict[str, int] = {}
    queues = await asyncio.to_thread(rabbit.queues)
    for name, q in queues.items():
        if not name.endswith(".dead") and q["messages"]:
            left[f"queue {name}"] = q["messages"]
    for label, sql in (
        ("outbox unpublished", "SELECT count(*) FROM outbox WHERE published_at IS NULL"),
        (
            "provider actions open",
            "SELECT count(*) FROM provider_actions WHERE status IN ('pending', 'processing')",
        ),
        (
            "HubSpot contacts pending",
            "SELECT count(*) FROM contacts WHERE hubspot_synced_version < change_version",
        ),
    ):
        n = await db.fetchval(sql)
        if n:
            left[label] = n
    return left


async def wait_quiet(dsn: str, rabbit: RabbitNode, timeout_s: float) -> dict[str, Any]:
    """Poll :func:`pending_work` until it is empty twice in a row, or ``timeout_s``."""
    started = time.monotonic()
    quiet_in_a_row = 0
    left: dict[str, int] = {"not checked": 1}
    while time.monotonic() - started < timeout_s:
        try:
            db = await asyncpg.connect(dsn, timeout=5)
            try:
                left = await pending_work(db, rabbit)
            finally:
                await db.close()
        except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
            left = {f"cannot check: {type(exc).__name__}": 1}
        quiet_in_a_row = quiet_in_a_row + 1 if not left else 0
        if quiet_in_a_row >= 2:
            break
        await asyncio.sleep(1.0)
    return {"quiet": not left, "waited_s": round(time.monotonic() - started, 1), "left": left}


async def dead_letters(rabbit: RabbitNode) -> Counter[str]:
    """Messages in each ``*.dead`` queue."""
    queues = await asyncio.to_thread(rabbit.queues)
    return Counter({n: q["messages"] for n, q in queues.items() if n.endswith(".dead")})


async def job_runs(
    db: asyncpg.Connection, since: float, until: float, jobs: tuple[str, ...]
) -> dict[str, Any]:
    """Scheduled runs whose tick lies in ``[since, until]`` (epoch seconds) of ``jobs``,
    which tick every minute: runs by status, ticks with two runs, runs not finished two
    minutes after their tick, and minutes with no run row at all."""
    rows = await db.fetch(
        """
        SELECT job, extract(epoch FROM tick)::float8 AS tick, status, attempts FROM job_runs
        WHERE trigger = 'schedule' AND tick >= to_timestamp($1) AND tick <= to_timestamp($2)
        """,
        since,
        until,
    )
    per_tick = Counter((r["job"], round(r["tick"])) for r in rows)
    minutes = range(int(since // 60 + 1) * 60, int((until - 30) // 60) * 60 + 1, 60)
    return {
        "runs": len(rows),
        "by_status": dict(Counter(r["status"] for r in rows)),
        "doubled_ticks": sum(1 for n in per_tick.values() if n > 1),
        "stuck": sum(
            1 for r in rows if r["status"] in ("scheduled", "running") and r["tick"] < until - 120
        ),
        "redelivered": sum(1 for r in rows if r["attempts"] > 1),
        "minutes_without_run": sum(1 for j in jobs for m in minutes if (j, m) not in per_tick),
        "minutes": len(minutes) * len(jobs),
    }
