"""Isolation (issue 8 item 4): a slow CRM never stalls unrelated work.

The CRM database sits behind a TCP proxy that delays every answer by 2 s, so each CRM
query of a login's package sync takes 2 s or more. With 30 logins in flight, a credit
notification (which needs only crmsync's own Postgres) must still commit in under
200 ms: no login may hold a main-pool connection while it waits for the CRM.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pytest

from services.sandbox.crmdb import add_client, add_package
from tests.conftest import PG_ADMIN, eventually, intake_settings, syncer_settings
from tests.helpers import TcpProxy

KEY = "test-app-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LOGINS = 30
CRM_REPLY_DELAY_S = 2.0
# The aim the issue sets for a credit write-through beside a slow CRM.
AIM_S = 0.2
CREDITS = 5


async def committed_in(http, url: str, db, n: int) -> float:
    """Seconds from posting credit notification ``n`` until its balance is committed."""
    body = {
        "idempotencyKey": f"iso-{n}", "reason": "booking_created",
        "occurredAt": "2026-11-21T10:00:00Z",
        "contact": {"studentId": f"st-iso-{n}", "email": f"iso{n}@example.test"},
        "credits": {"sj_credits": n}, "version": 1,
    }  # fmt: skip
    started = time.perf_counter()
    async with http.post(f"{url}/v1/events/credits", json=body, headers=AUTH) as resp:
        assert resp.status == 202
    deadline = started + 60
    while time.perf_counter() < deadline:
        found = await db.fetchval(
            "SELECT 1 FROM contact_credits cc JOIN contacts c ON c.id = cc.contact_id"
            " WHERE c.student_id = $1",
            f"st-iso-{n}",
        )
        if found:
            return time.perf_counter() - started
        await asyncio.sleep(0.005)
    return float("inf")


@pytest.mark.timeout(180)
async def test_a_credit_commits_in_under_200_ms_while_30_logins_wait_for_a_slow_crm(
    http, make_intake, make_syncer, namespace, database, sandbox, make_crm_database, db
) -> None:
    import asyncpg

    crm_dsn = await make_crm_database()
    crm_conn = await asyncpg.connect(crm_dsn)
    try:
        for i in range(LOGINS):
            client = await add_client(
                crm_conn, first_name=f"F{i}", last_name=f"L{i}", email=f"slow{i}@example.test"
            )
            await add_package(crm_conn, client)
    finally:
        await crm_conn.close()
    host, port = PG_ADMIN.rsplit("@", 1)[1].split("/")[0].split(":")
    proxy = TcpProxy(host, int(port), reply_delay_s=CRM_REPLY_DELAY_S)
    await proxy.start()
    try:
        # All 30 logins run at once (the default would let only half the pool's worth of
        # them in): what keeps the credit fast is that none holds a connection meanwhile.
        syncer: Any = await make_syncer(
            syncer_settings(
                database, namespace, sandbox, crm_database_url=proxy.dsn(crm_dsn),
                db_pool_max_size=10, queue_prefetch={"syncer.logins": LOGINS},
            )
        )  # fmt: skip
        url = await make_intake(intake_settings(namespace, api_keys={"app": KEY}))
        logins = [
            {"profileId": f"slow-{i}", "email": f"slow{i}@example.test",
             "occurredAt": "2026-11-21T10:00:00Z"}
            for i in range(LOGINS)
        ]  # fmt: skip

        async def post_login(body: dict[str, Any]) -> int:
            async with http.post(f"{url}/v1/events/login", json=body, headers=AUTH) as resp:
                return resp.status

        assert set(await asyncio.gather(*(post_login(b) for b in logins))) == {202}
        # The logins are being handled, all at once, and waiting for the CRM.
        assert (
            await eventually(
                lambda: _in_flight(syncer, "syncer.logins"), timeout_s=10, interval_s=0.02
            )
            == LOGINS
        )
        await asyncio.sleep(1.0)
        # Independent credits, 0.3 s apart: one that waits does not hold back the next.
        measurements = []
        for n in range(CREDITS):
            measurements.append(asyncio.create_task(committed_in(http, url, db, n)))
            await asyncio.sleep(0.3)
        synced = await db.fetchval("SELECT count(*) FROM crm_mappings WHERE synced_at IS NOT NULL")
        timings = await asyncio.gather(*measurements)
        print(
            f"\ncredit commit with {LOGINS} logins on a CRM {CRM_REPLY_DELAY_S} s away: "
            f"median {statistics.median(timings) * 1000:.0f} ms, "
            f"max {max(timings) * 1000:.0f} ms; logins synced meanwhile: {synced}/{LOGINS}"
        )
        # Measured while logins were still waiting for the CRM.
        assert synced < LOGINS
        assert max(timings) < AIM_S, timings
        # And the logins all get there in the end.
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) = $1 FROM crm_mappings WHERE synced_at IS NOT NULL", LOGINS
            ),
            timeout_s=150,
            interval_s=0.5,
        )
    finally:
        await proxy.cut()


async def _in_flight(syncer: Any, queue: str) -> int:
    """Handlers of ``queue`` running now, once they are all in (0 until then)."""
    running = sum(len(c._in_flight) for c in syncer.consumers if c.queue_name.endswith(queue))
    return running if running >= LOGINS else 0
