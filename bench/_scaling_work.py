"""The scaling bench's two workloads and their latency: orders → provider actions, and
the packages bulk run.

**Latency.** Providers: one latency-only fault per provider on the sandbox
(``POST /_sandbox/faults`` ``{"provider": "shopify", "latency_ms": 50}``,
``services/sandbox/faults.py``), so every Shopify, Commerce7, HubSpot and RepCard call
waits that long before it is answered. The CRM (a PostgreSQL database the bulk run
reads, no sandbox HTTP in between): :func:`set_crm_latency` renames the bench CRM's
``crm_customers`` view and puts in its place a view over it whose one-time filter
sleeps (``WHERE (SELECT pg_sleep(s)) IS NOT NULL``, an InitPlan: once per statement,
not per row). Every CRM statement of crmsync reads ``crm_customers``, so each costs the
latency once, and a sleeping backend holds its CRM connection as a slow CRM would.

**Orders.** Round ``r``'s orders are the reference order
``tests/fixtures/shopify_order_450789469.json`` with its ids, customer and amounts
changed (``_chaos_load._shopify``): each one a first paid order (600.00, Gold) of a
customer of its own, so each creates one enrolment and one ``add_membership`` action
(a Shopify customer read and one ``tagsAdd``: two calls).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
from _chaos_load import _shopify
from _stack import sandbox_json

PROVIDERS = ("shopify", "commerce7", "hubspot", "repcard")
# Provider calls of one add_membership action at Shopify (services/syncer/providers.py).
SHOPIFY_CALLS_PER_ACTION = 2
# Order and customer ids of round r start here (clear of the chaos bench's 7e9 range).
_ID_BASE = 8_000_000_000
_ROUND_IDS = 10_000_000
# How often a push is tried while intake answers 5xx or not at all.
_PUSH_TRIES = 5


async def set_provider_latency(sandbox_url: str, latency_ms: float) -> None:
    """Every provider call to the sandbox answered ``latency_ms`` later (0: no delay)."""
    await sandbox_json(f"{sandbox_url}/_sandbox/faults", "DELETE")
    if latency_ms > 0:
        for provider in PROVIDERS:
            spec = {"provider": provider, "latency_ms": latency_ms}
            await sandbox_json(f"{sandbox_url}/_sandbox/faults", "POST", spec)


async def set_crm_latency(crm_dsn: str, latency_ms: float) -> None:
    """Each statement reading the bench CRM's ``crm_customers`` sleeps ``latency_ms``."""
    conn = await asyncpg.connect(crm_dsn)
    try:
        async with conn.transaction():
            direct = await conn.fetchval("SELECT to_regclass('bench_crm_customers_direct')")
            if direct is None:
                await conn.execute("ALTER VIEW crm_customers RENAME TO bench_crm_customers_direct")
            else:
                await conn.execute("DROP VIEW crm_customers")
            sleep = f" WHERE (SELECT pg_sleep({latency_ms / 1000:.6f})) IS NOT NULL"
            await conn.execute(
                "CREATE VIEW crm_customers AS SELECT * FROM bench_crm_customers_direct"
                + (sleep if latency_ms > 0 else "")
            )
    finally:
        await conn.close()


def shopify_orders(round_no: int, count: int, secret: str) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` signed ``orders/paid`` webhooks (body, headers), each of a new customer."""
    base = _ID_BASE + round_no * _ROUND_IDS
    orders = []
    for i in range(count):
        body, extra = _shopify(f"s{round_no}", base, i, 0, "Gold", secret)
        orders.append((body, extra["headers"]))
    return orders


async def push(
    url: str, orders: list[tuple[bytes, dict[str, str]]], *, concurrency: int
) -> dict[str, Any]:
    """POST every webhook to intake, ``concurrency`` at a time, until each is 2xx.

    Raises:
        RuntimeError: one was refused (4xx) or never accepted.
    """
    pending = iter(orders)
    accepted = 0
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            nonlocal accepted
            for body, headers in pending:
                for attempt in range(_PUSH_TRIES):
                    try:
                        async with session.post(url, data=body, headers=headers) as resp:
                            await resp.read()
                            status = resp.status
                    except (aiohttp.ClientError, TimeoutError):
                        status = 0
                    if 200 <= status < 300:
                        accepted += 1
                        break
                    if 400 <= status < 500:
                        raise RuntimeError(f"intake refused a webhook: {status}")
                    await asyncio.sleep(0.5 * 2**attempt)
                else:
                    raise RuntimeError(f"intake did not accept a webhook ({status})")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"accepted": accepted, "push_s": round(time.monotonic() - started, 2)}


async def wait_actions(
    pool: asyncpg.Pool, after_id: int, expected: int, timeout_s: float
) -> list[datetime]:
    """Wait until ``expected`` provider actions with id > ``after_id`` are done; their
    ``completed_at``, sorted.

    Raises:
        RuntimeError: one failed, or they were not all done within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        row = await pool.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed, count(*) AS created
            FROM provider_actions WHERE id > $1
            """,
            after_id,
        )
        if row["failed"]:
            raise RuntimeError(f"{row['failed']} provider action(s) failed")
        if row["completed"] >= expected:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"after {timeout_s:.0f} s: {row['completed']} of {expected} actions completed, "
                f"{row['created']} created"
            )
        await asyncio.sleep(0.1)
    rows = await pool.fetch(
        "SELECT completed_at FROM provider_actions WHERE id > $1 ORDER BY completed_at", after_id
    )
    return [r["completed_at"] for r in rows]


def rates(started: datetime, done: list[datetime]) -> dict[str, float | None]:
    """Actions per second: end to end (first push → last completion) and steady (the
    middle 80 % of the completions, which leaves out the pipeline filling and draining)."""
    if not done:
        return {"end_to_end_per_s": None, "steady_per_s": None}
    span = (done[-1] - started).total_seconds()
    lo, hi = int(0.1 * (len(done) - 1)), int(0.9 * (len(done) - 1))
    middle = (done[hi] - done[lo]).total_seconds()
    return {
        "end_to_end_per_s": round(len(done) / span, 1) if span > 0 else None,
        "steady_per_s": round((hi - lo) / middle, 1) if middle > 0 else None,
    }
