"""sync_profile with no connection held while the CRM is read, and concurrent syncs of one
profile (real Postgres on both sides)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.sandbox.crmdb import add_client, add_package
from services.syncer.packages import CrmReader, ProfileData, ProfileNotFoundError, sync_profile
from shared.db import create_pool
from tests.packages.test_sync_profile import slow_down_customers_view

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


class GatedCrm(CrmReader):
    """A CrmReader that stops after its first package read until ``gate`` is set."""

    def __init__(self, base: CrmReader) -> None:
        super().__init__(base.pool, default_region=base.default_region, acquire_timeout_s=5)
        self.gate = asyncio.Event()
        self.paused = asyncio.Event()
        self.package_reads = 0

    async def customer_packages(self, customer_id: str):  # type: ignore[no-untyped-def]
        found = await super().customer_packages(customer_id)
        self.package_reads += 1
        if self.package_reads == 1:
            self.paused.set()
            await self.gate.wait()
        return found


async def test_no_connection_of_crmsyncs_pool_is_held_while_the_crm_is_read(
    database, crm, crm_conn
) -> None:
    await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await slow_down_customers_view(crm_conn, 1.5)
    # One connection in all: if the sync held it during the CRM read, nothing else could run.
    pool = await create_pool(database, min_size=1, max_size=1, acquire_timeout_s=0.3)
    try:
        sync = asyncio.create_task(
            sync_profile(pool, crm, ProfileData("p1", email="ada@example.com"), now=NOW)
        )
        await asyncio.sleep(0.5)
        assert not sync.done()
        assert await pool.fetchval("SELECT count(*) FROM profiles") == 0
        result = await sync
        assert result.method == "email"
    finally:
        await pool.close()


async def test_an_older_crm_read_never_overwrites_a_newer_one(db, crm, crm_conn) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    package = await add_package(crm_conn, ada, hours=(10, 1))
    await sync_profile(db, crm, ProfileData("p1", email="ada@example.com"), now=NOW)
    slow = GatedCrm(crm)
    # The first sync reads the package (1 h used) and stops before writing ...
    older = asyncio.create_task(sync_profile(db, slow, ProfileData("p1"), now=NOW))
    await asyncio.wait_for(slow.paused.wait(), 5)
    # ... the CRM changes, and a second sync reads and writes the new state ...
    await crm_conn.execute(
        "UPDATE bayclub.client_packages SET hours_consumed = 4 WHERE pkg_no = $1", package
    )
    newer = await sync_profile(db, crm, ProfileData("p1"), now=NOW)
    assert newer.changed == 1
    # ... then the first one finishes: its older read is not written.
    slow.gate.set()
    result = await older
    assert result.superseded and result.changed == 0
    assert float(await db.fetchval("SELECT used FROM packages")) == 4.0


async def test_a_sync_whose_profile_changed_meanwhile_starts_again(db, crm, crm_conn) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@a.test")
    bea = await add_client(crm_conn, first_name="Bea", last_name="L", email="bea@b.test")
    await add_package(crm_conn, ada, code="BAY10")
    await add_package(crm_conn, bea, code="LESSON5", name="5 Lessons", hours=None, uses=(5, 0))
    await db.execute("INSERT INTO profiles (profile_id, email) VALUES ('p1', 'ada@a.test')")
    slow = GatedCrm(crm)
    # A bulk sync matches by the stored email (ada) and stops before writing ...
    bulk = asyncio.create_task(sync_profile(db, slow, ProfileData("p1"), now=NOW, create=False))
    await asyncio.wait_for(slow.paused.wait(), 5)
    # ... a login changes the email and maps the profile to bea ...
    login = await sync_profile(db, crm, ProfileData("p1", email="bea@b.test"), now=NOW)
    assert login.crm_customer_id == str(bea)
    # ... the bulk sync finds what it assumed changed, reads again, and agrees.
    slow.gate.set()
    result = await bulk
    assert result.crm_customer_id == str(bea) and slow.package_reads == 2
    m = await db.fetchrow("SELECT status, crm_customer_id FROM crm_mappings")
    assert tuple(m) == ("matched", str(bea))
    assert await db.fetchval("SELECT array_agg(name) FROM packages") == ["5 Lessons"]


async def test_many_syncs_of_one_profile_at_once_end_consistent(db, crm, crm_conn) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await add_package(crm_conn, ada)
    await add_package(crm_conn, ada, code="SIM10", name="10 Simulator Rounds", uses=(10, 2))
    logins = [ProfileData("p1", email="ada@example.com", last_login_at=NOW)] * 8
    results = await asyncio.gather(*(sync_profile(db, crm, p, now=NOW) for p in logins))
    assert {r.crm_customer_id for r in results} == {str(ada)}
    assert await db.fetchval("SELECT count(*) FROM crm_mappings") == 1
    assert await db.fetchval("SELECT count(*) FROM packages WHERE removed_at IS NULL") == 2


async def test_syncing_an_unknown_profile_without_create_writes_nothing(db, crm) -> None:
    with pytest.raises(ProfileNotFoundError):
        await sync_profile(db, crm, ProfileData("nobody"), now=NOW, create=False)
    assert await db.fetchval("SELECT count(*) FROM profiles") == 0
    assert await db.fetchval("SELECT count(*) FROM crm_mappings") == 0
