"""Helpers of the RepCard pull tests: a small sandbox company, runs, log rows."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import syncer_settings
from tests.syncer.test_job_failures import ended, trigger

# Small enough for a loaded CI machine, big enough for several pages and chunks.
SMALL = {
    "users": 12, "offices": 3, "customers": 260, "appointments": 420, "status_logs": 500,
    "customer_attachments": 230, "appointment_attachments": 210,
}  # fmt: skip
TABLES = {
    "users": "repcard_users", "offices": "repcard_offices", "customers": "repcard_customers",
    "appointments": "repcard_appointments", "status_logs": "repcard_status_logs",
    "customer_attachments": "repcard_customer_attachments",
    "appointment_attachments": "repcard_appointment_attachments",
}  # fmt: skip


def repcard_settings(database: str, namespace: str, sandbox: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "repcard_base_url": f"{sandbox}/repcard",
        "repcard_rate_requests": 2000,
        "repcard_rate_period_s": 1,
        "repcard_per_page": 50,
        **overrides,
    }
    return syncer_settings(database, namespace, sandbox, **values)


async def seed_company(http: aiohttp.ClientSession, sandbox: str, **sizes: int) -> dict[str, int]:
    async with http.post(f"{sandbox}/_sandbox/repcard/company", json={**SMALL, **sizes}) as r:
        assert r.status == 200, await r.text()
        counts: dict[str, int] = await r.json()
        return counts


async def sandbox_call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def run_pull(db: Any, params: dict[str, Any], timeout_s: float = 90) -> Any:
    run_id = await trigger(db, "repcard.sync", params)
    return await ended(db, run_id, timeout_s=timeout_s)


async def log_rows(db: Any, run_id: int) -> dict[str, Any]:
    rows = await db.fetch("SELECT * FROM repcard_sync_log WHERE run_id = $1", run_id)
    return {r["entity_type"]: r for r in rows}


async def table_counts(db: Any) -> dict[str, int]:
    return {e: await db.fetchval(f"SELECT count(*) FROM {t}") for e, t in TABLES.items()}
