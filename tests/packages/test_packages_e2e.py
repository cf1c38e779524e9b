"""W1 end to end: intake → RabbitMQ → syncer → both Postgres databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from services.sandbox.crmdb import add_client, add_package
from services.scheduler.history import create_manual_run
from tests.conftest import eventually, free_port, intake_settings, ready, syncer_settings

KEY = "test-app-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    return await make_intake(intake_settings(namespace, api_keys={"app": KEY}, refresh_wait_s=3))


@pytest.fixture
async def crm_syncer(make_syncer, database, namespace, sandbox, crm_database) -> Any:
    return await make_syncer(
        syncer_settings(database, namespace, sandbox, crm_database_url=crm_database)
    )


def login(profile_id: str, **fields: Any) -> dict[str, Any]:
    return {"profileId": profile_id, "occurredAt": "2026-11-21T10:00:00Z", **fields}


async def post_login(http, url: str, body: dict[str, Any]) -> int:
    async with http.post(f"{url}/v1/events/login", json=body, headers=AUTH) as resp:
        return resp.status


async def test_a_login_maps_by_email_and_brings_the_packages(
    http, app_intake, crm_syncer, crm_conn, db
) -> None:
    client = await add_client(
        crm_conn, first_name="Ada", last_name="Lovelace", email="ada@example.test"
    )
    await add_package(crm_conn, client, hours=(10, 2.5))
    await add_package(crm_conn, client, code="LESSON5", name="5 Lessons", hours=None, uses=(5, 1))
    assert await post_login(http, app_intake, login("p-1", email="ADA@Example.TEST")) == 202
    mapping = await eventually(lambda: db.fetchrow("SELECT * FROM crm_mappings"))
    assert (mapping["status"], mapping["method"]) == ("matched", "email")
    rows = await db.fetch("SELECT * FROM packages ORDER BY name")
    assert [(r["name"], float(r["remaining"])) for r in rows] == [
        ("10 Bay Hours", 7.5),
        ("5 Lessons", 4.0),
    ]


async def test_the_same_login_twice_leaves_one_mapping(
    http, app_intake, crm_syncer, crm_conn, db
) -> None:
    client = await add_client(
        crm_conn, first_name="Bo", last_name="Diddley", phone="(555) 010-7788"
    )
    await add_package(crm_conn, client)
    for _ in range(2):
        assert await post_login(http, app_intake, login("p-2", phone="+1 555 010 7788")) == 202
    await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM processed_messages"))
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM crm_mappings") == 1
    assert await db.fetchval("SELECT method FROM crm_mappings") == "phone"
    assert await db.fetchval("SELECT count(*) FROM packages") == 1


async def test_a_booking_created_syncs_that_profile(
    http, make_intake, namespace, crm_syncer, crm_conn, db
) -> None:
    url = await make_intake(intake_settings(namespace, api_keys={"app": KEY}))
    client = await add_client(crm_conn, first_name="Cy", last_name="Young", email="cy@example.test")
    await add_package(crm_conn, client)
    booking = {
        "idempotencyKey": "bk-1", "action": "created", "occurredAt": "2026-11-21T10:00:00Z",
        "booking": {"bookingRef": "bk-1", "examRef": "bay-3",
                    "contact": {"studentId": "p-3", "email": "cy@example.test"}},
    }  # fmt: skip
    async with http.post(f"{url}/v1/events/bookings", json=booking, headers=AUTH) as resp:
        assert resp.status == 202
    await eventually(lambda: db.fetchval("SELECT count(*) FROM packages WHERE profile_id = 'p-3'"))


async def test_refresh_on_demand_answers_with_the_packages(
    http, app_intake, crm_syncer, crm_conn, db
) -> None:
    client = await add_client(
        crm_conn, first_name="Di", last_name="Fossey", email="di@example.test"
    )
    await add_package(crm_conn, client, hours=(20, 5))
    assert await post_login(http, app_intake, login("p-4", email="di@example.test")) == 202
    await eventually(lambda: db.fetchval("SELECT count(*) FROM packages"))
    await add_package(crm_conn, client, code="BAY5", name="5 Bay Hours", hours=(5, 0))
    async with http.post(f"{app_intake}/v1/profiles/p-4/packages/sync", headers=AUTH) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["matched"] is True
    assert sorted(p["name"] for p in body["packages"]) == ["10 Bay Hours", "5 Bay Hours"]


async def test_refresh_with_a_slow_crm_answers_202_and_can_be_followed(
    http, make_intake, namespace, crm_syncer, crm_conn, db
) -> None:
    url = await make_intake(intake_settings(namespace, api_keys={"app": KEY}, refresh_wait_s=0.5))
    client = await add_client(
        crm_conn, first_name="Ed", last_name="Hillary", email="ed@example.test"
    )
    await add_package(crm_conn, client)
    assert await post_login(http, url, login("p-5", email="ed@example.test")) == 202
    await eventually(lambda: db.fetchval("SELECT count(*) FROM packages"))
    # The CRM answers its package reads in ~1.5 s from now on.
    await crm_conn.execute(
        """
        CREATE OR REPLACE FUNCTION public.crmsync_test_slow() RETURNS boolean
        LANGUAGE sql AS 'SELECT pg_sleep(1.5) IS NOT NULL'
        """
    )
    view = await crm_conn.fetchval("SELECT pg_get_viewdef('crm_packages'::regclass)")
    await crm_conn.execute(
        f"CREATE OR REPLACE VIEW crm_packages AS SELECT * FROM ({view.rstrip(';')}) v"
        " WHERE public.crmsync_test_slow()"
    )
    async with http.post(f"{url}/v1/profiles/p-5/packages/sync", headers=AUTH) as resp:
        assert resp.status == 202
        accepted = await resp.json()
    assert resp.headers["Location"] == accepted["statusUrl"]

    async def status() -> dict[str, Any] | None:
        async with http.get(f"{url}{accepted['statusUrl']}", headers=AUTH) as resp:
            assert resp.status == 200
            body = await resp.json()
            return body if body["status"] != "running" else None

    final = await eventually(status, timeout_s=15, interval_s=0.3)
    assert final["status"] == "succeeded"


async def test_an_unknown_refresh_is_a_404(http, app_intake, crm_syncer) -> None:
    async with http.get(f"{app_intake}/v1/profiles/p-9/packages/sync/nope", headers=AUTH) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"


async def seed_profiles(db, crm_conn, n: int) -> None:
    """``n`` CRM customers with a package each, and ``n`` profiles with their emails."""
    await crm_conn.execute(
        "INSERT INTO bayclub.clients (given_name, family_name, email_address)"
        " SELECT 'F' || i, 'L' || i, 'bulk' || i || '@example.test' FROM generate_series(1, $1) i",
        n,
    )
    await crm_conn.execute(
        "INSERT INTO bayclub.client_packages (client_no, product_code, product_name,"
        " hours_purchased, hours_consumed, state)"
        " SELECT client_no, 'BAY10', '10 Bay Hours', 10, 1, 'A' FROM bayclub.clients"
    )
    await db.execute(
        "INSERT INTO profiles (profile_id, email)"
        " SELECT 'bulk-' || i, 'bulk' || i || '@example.test'"
        " FROM generate_series(1, $1) i",
        n,
    )


async def test_a_bulk_run_shared_by_two_syncer_processes_adds_up(
    http, spawn_syncer, crm_database, crm_conn, db
) -> None:
    await seed_profiles(db, crm_conn, 2000)
    # Three profiles whose package rows our database refuses: their syncs fail.
    await db.execute(
        """
        CREATE FUNCTION refuse_some() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.profile_id IN ('bulk-7', 'bulk-700', 'bulk-1999') THEN
                RAISE EXCEPTION 'refused for the test: %', NEW.profile_id;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_some BEFORE INSERT ON packages
            FOR EACH ROW EXECUTE FUNCTION refuse_some();
        """
    )
    ports = [free_port(), free_port()]
    for port in ports:
        await spawn_syncer(port, CRMSYNC_CRM_DATABASE_URL=crm_database, CRMSYNC_PREFETCH_COUNT="2")
    for port in ports:
        await eventually(lambda port=port: ready(http, port), timeout_s=30)
    run = await create_manual_run(
        db, job="packages.bulk_sync", params={"batchSize": 20}, triggered_by="test",
        idempotency_key=None, now=datetime.now(UTC), source="urn:test",
    )  # fmt: skip
    row = await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM job_runs WHERE id = $1 AND status IN ('succeeded', 'failed')", run.run_id
        ),
        timeout_s=60,
        interval_s=0.3,
    )
    totals = row["totals"]
    assert row["status"] == "succeeded", row["error"]
    assert totals["totalProfiles"] == 2000 and totals["chunks"] == 100 == totals["chunksDone"]
    assert totals["successfulProfiles"] == 1997
    assert totals["failedProfiles"] == 3
    assert sorted(e.split(":")[0] for e in totals["errors"]) == ["bulk-1999", "bulk-7", "bulk-700"]
    assert totals["totalPackages"] == 1997  # packages of the profiles that synced
    assert await db.fetchval("SELECT count(*) FROM packages") == 1997
    shares = []
    for port in ports:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
        shares.append(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("crmsync_messages_handled_total{")
                and "syncer.packages.chunks" in line
                and 'outcome="ok"' in line
            )
        )
    assert sum(shares) == 100 and all(s > 0 for s in shares), shares


async def test_a_refresh_of_an_unknown_profile_is_a_404_and_creates_nothing(
    http, app_intake, crm_syncer, crm_conn, db
) -> None:
    await add_client(crm_conn, first_name="Ng", last_name="Ghost", email="ghost@example.test")
    async with http.post(f"{app_intake}/v1/profiles/ghost/packages/sync", headers=AUTH) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        assert "ghost" in (await resp.json())["detail"]
    assert await db.fetchval("SELECT count(*) FROM profiles") == 0
    assert await db.fetchval("SELECT count(*) FROM crm_mappings") == 0
    refresh = await db.fetchrow("SELECT status, error FROM package_refreshes")
    assert refresh["status"] == "failed" and "no profile" in refresh["error"]


async def test_a_booking_without_a_student_id_creates_no_profile(
    http, app_intake, crm_syncer, crm_conn, db
) -> None:
    from prometheus_client import REGISTRY

    def skipped() -> float:
        labels = {"reason": "no_student_id"}
        return REGISTRY.get_sample_value("crmsync_package_syncs_skipped_total", labels) or 0.0

    before = skipped()
    client = await add_client(crm_conn, first_name="Em", last_name="Only", email="em@example.test")
    await add_package(crm_conn, client)
    booking = {
        "idempotencyKey": "bk-nostudent", "action": "created", "occurredAt": "2026-11-21T10:00:00Z",
        "booking": {"bookingRef": "bk-nostudent", "examRef": "bay-3",
                    "contact": {"email": "em@example.test"}},
    }  # fmt: skip
    async with http.post(f"{app_intake}/v1/events/bookings", json=booking, headers=AUTH) as resp:
        assert resp.status == 202
    # The booking itself is applied; the package sync is skipped, and counted.
    await eventually(lambda: db.fetchval("SELECT count(*) FROM bookings"))
    await eventually(lambda: _above(skipped, before))
    assert await db.fetchval("SELECT count(*) FROM profiles") == 0
    assert await db.fetchval("SELECT count(*) FROM packages") == 0


async def _above(value, floor: float) -> bool:
    return value() > floor
