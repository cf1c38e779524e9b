"""sync_profile against real Postgres: crmsync's test database and a CRM database of its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.sandbox.crmdb import add_client, add_package
from services.syncer.packages import (
    CrmUnavailableError,
    ProfileData,
    ProfileSyncResult,
    sync_profile,
)
from shared.errors import TransientError

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


async def sync(db, crm, profile: ProfileData, now: datetime = NOW) -> ProfileSyncResult:
    return await sync_profile(db, crm, profile, now=now)


async def mapping(db, profile_id: str = "p1") -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM crm_mappings WHERE profile_id = $1", profile_id)


async def packages(db) -> dict[str, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM packages ORDER BY crm_package_id")
    return {r["crm_package_id"]: r for r in rows}


async def test_a_login_with_a_mixed_case_email_maps_by_email_and_stores_the_packages(
    db, crm, crm_conn
) -> None:
    ada = await add_client(
        crm_conn,
        first_name="Ada",
        last_name="Lovelace",
        email="Ada.Lovelace@Example.com",
        phone="(415) 555-0123",
    )
    bay = await add_package(crm_conn, ada, hours=(Decimal("10"), Decimal("2.5")))
    lessons = await add_package(crm_conn, ada, code="LESSON5", name="5 Lesson Pack", uses=(5, 5))
    expired = await add_package(crm_conn, ada, valid_until=date(2020, 1, 31))
    await add_client(crm_conn, first_name="Ada", last_name="Lovelace", email="other@example.com")

    login = ProfileData(
        "p1",
        email="ADA.LOVELACE@example.COM",
        first_name="Ada",
        last_name="Lovelace",
        last_login_at=NOW,
    )
    result = await sync(db, crm, login)

    assert (result.crm_customer_id, result.method, result.matched_now) == (str(ada), "email", True)
    assert (result.packages, result.changed, result.removed) == (3, 3, 0)
    m = await mapping(db)
    assert (m["status"], m["crm_customer_id"], m["method"], m["matched_at"]) == (
        "matched",
        str(ada),
        "email",
        NOW,
    )
    assert (m["attempts"], m["synced_at"]) == (1, NOW)
    stored = await packages(db)
    assert set(stored) == {str(bay), str(lessons), str(expired)}
    hours = stored[str(bay)]
    assert (hours["profile_id"], hours["crm_customer_id"], hours["package_type"]) == (
        "p1",
        str(ada),
        "bay_time",
    )
    assert (hours["unit"], hours["total"], hours["used"], hours["remaining"], hours["status"]) == (
        "hours",
        Decimal("10.00"),
        Decimal("2.50"),
        Decimal("7.50"),
        "active",
    )
    uses = stored[str(lessons)]
    assert (uses["unit"], uses["remaining"], uses["status"]) == ("uses", Decimal(0), "used_up")
    assert stored[str(expired)]["status"] == "expired"
    # The CRM's date is the venue's day: valid to the end of 31 January in New York.
    assert stored[str(expired)]["expires_at"] == datetime(2020, 2, 1, 5, tzinfo=UTC)
    profile = await db.fetchrow("SELECT * FROM profiles WHERE profile_id = 'p1'")
    assert (profile["email"], profile["last_login_at"]) == ("ADA.LOVELACE@example.COM", NOW)


async def test_a_phone_only_match_works_across_formats(db, crm, crm_conn) -> None:
    await add_client(crm_conn, first_name="Grace", last_name="Hopper", phone="212.555.0188")
    grace = await add_client(crm_conn, first_name="G.", last_name="Hopper", phone="(415) 555-0123")
    await add_package(crm_conn, grace)

    result = await sync(
        db,
        crm,
        ProfileData(
            "p1",
            email="grace@navy.test",
            phone="+1 415 555 0123",
            first_name="Grace",
            last_name="Hopper",
        ),
    )

    assert (result.crm_customer_id, result.method, result.packages) == (str(grace), "phone", 1)
    profile = await db.fetchrow("SELECT phone, phone_e164 FROM profiles")
    assert tuple(profile) == ("+1 415 555 0123", "+14155550123")


async def test_an_ambiguous_name_stays_unmatched_until_the_crm_makes_it_unique(
    db, crm, crm_conn
) -> None:
    first = await add_client(crm_conn, first_name="John", last_name="Smith", email="js@a.test")
    second = await add_client(crm_conn, first_name="john ", last_name="SMITH", email="js@b.test")
    await add_package(crm_conn, second)
    profile = ProfileData("p1", email="john@c.test", first_name="John", last_name="Smith")

    result = await sync(db, crm, profile)

    assert result.unmatched and result.unmatched_reason == "name matches 2 CRM customers"
    assert (result.packages, result.changed) == (0, 0)
    m = await mapping(db)
    assert (m["status"], m["crm_customer_id"], m["attempts"], m["last_attempt_at"]) == (
        "unmatched",
        None,
        1,
        NOW,
    )
    assert await db.fetchval("SELECT count(*) FROM packages") == 0

    # The CRM archives its duplicate; the next login retries and now finds one.
    await crm_conn.execute("UPDATE bayclub.clients SET archived = true WHERE client_no = $1", first)
    later = NOW + timedelta(hours=1)
    result = await sync(db, crm, profile, now=later)

    assert (result.crm_customer_id, result.method, result.matched_now) == (
        str(second),
        "name",
        True,
    )
    m = await mapping(db)
    assert (m["status"], m["attempts"], m["matched_at"], m["unmatched_reason"]) == (
        "matched",
        2,
        later,
        None,
    )
    assert await db.fetchval("SELECT count(*) FROM packages") == 1


async def test_a_package_removed_in_the_crm_is_marked_removed_and_restored_if_it_returns(
    db, crm, crm_conn
) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    kept = await add_package(crm_conn, ada)
    gone = await add_package(crm_conn, ada, code="SIM10", name="10 Simulator Rounds", uses=(10, 1))
    profile = ProfileData("p1", email="ada@example.com")
    await sync(db, crm, profile)

    await crm_conn.execute("DELETE FROM bayclub.client_packages WHERE pkg_no = $1", gone)
    later = NOW + timedelta(days=1)
    result = await sync(db, crm, profile, now=later)

    assert (result.packages, result.changed, result.removed) == (1, 0, 1)
    stored = await packages(db)
    assert stored[str(gone)]["removed_at"] == later
    assert stored[str(kept)]["removed_at"] is None
    assert (await sync(db, crm, profile, now=later)).removed == 0  # counted once

    # It comes back (restored from the CRM's trash), partly used meanwhile.
    await crm_conn.execute(
        "INSERT INTO bayclub.client_packages (pkg_no, client_no, product_code, product_name,"
        " sessions_purchased, sessions_consumed) VALUES ($1, $2, 'SIM10', '10 Simulator Rounds',"
        " 10, 2)",
        gone,
        ada,
    )
    result = await sync(db, crm, profile, now=later + timedelta(days=1))

    assert (result.packages, result.changed, result.removed) == (2, 1, 0)
    back = (await packages(db))[str(gone)]
    assert (back["removed_at"], back["used"]) == (None, Decimal(2))


async def test_the_same_login_twice_keeps_one_mapping_and_the_same_packages(
    db, crm, crm_conn
) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await add_package(crm_conn, ada)
    await add_package(crm_conn, ada, uses=(5, 1))
    login = ProfileData("p1", email="Ada@Example.com", last_login_at=NOW)

    first = await sync(db, crm, login)
    before = await packages(db)
    second = await sync(db, crm, login, now=NOW + timedelta(minutes=5))

    assert first.matched_now and not second.matched_now
    assert (second.crm_customer_id, second.method) == (first.crm_customer_id, "email")
    assert (second.packages, second.changed, second.removed) == (2, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM crm_mappings") == 1
    assert await db.fetchval("SELECT count(*) FROM profiles") == 1
    assert await packages(db) == before
    m = await mapping(db)
    assert (m["attempts"], m["matched_at"], m["synced_at"]) == (1, NOW, NOW + timedelta(minutes=5))


async def test_a_field_the_event_leaves_out_keeps_its_stored_value(db, crm, crm_conn) -> None:
    await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await sync(
        db,
        crm,
        ProfileData(
            "p1", email="ada@example.com", phone="4155550123", first_name="Ada", last_login_at=NOW
        ),
    )

    result = await sync(db, crm, ProfileData("p1"), now=NOW + timedelta(days=1))

    assert result.method == "email"
    row = await db.fetchrow("SELECT email, phone_e164, first_name, last_login_at FROM profiles")
    assert tuple(row) == ("ada@example.com", "+14155550123", "Ada", NOW)


async def test_a_customer_already_mapped_to_another_profile_is_not_shared(
    db, crm, crm_conn
) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await add_package(crm_conn, ada)
    await sync(db, crm, ProfileData("p1", email="ada@example.com"))

    result = await sync(db, crm, ProfileData("p2", email="ADA@example.com"))

    assert result.unmatched
    assert result.unmatched_reason == f"CRM customer {ada} (email) is mapped to profile p1"
    assert await db.fetchval("SELECT profile_id FROM packages") == "p1"


async def test_a_customer_merged_away_in_the_crm_is_matched_again(db, crm, crm_conn) -> None:
    old = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    old_package = await add_package(crm_conn, old)
    await sync(db, crm, ProfileData("p1", email="ada@example.com"))

    # The CRM merges duplicates: the old record is archived, its package moves to the new
    # one, which also has a package of its own.
    new = await add_client(crm_conn, first_name="Ada", last_name="L", email="Ada@Example.com")
    await crm_conn.execute("UPDATE bayclub.clients SET archived = true WHERE client_no = $1", old)
    await crm_conn.execute("UPDATE bayclub.client_packages SET client_no = $1", new)
    new_package = await add_package(crm_conn, new, uses=(3, 0))
    result = await sync(db, crm, ProfileData("p1"), now=NOW + timedelta(days=1))

    assert (result.crm_customer_id, result.method, result.matched_now) == (str(new), "email", True)
    stored = await packages(db)
    assert {k: v["crm_customer_id"] for k, v in stored.items()} == {
        str(old_package): str(new),
        str(new_package): str(new),
    }


async def slow_down_customers_view(crm_conn, seconds: float) -> None:
    """Every query on crm_customers now takes ``seconds`` longer."""
    await crm_conn.execute(
        f"""
        CREATE OR REPLACE VIEW crm_customers AS
        SELECT c.client_no AS id, c.email_address AS email, c.mobile AS phone,
               c.given_name AS first_name, c.family_name AS last_name, c.modified_on AS updated_at
        FROM bayclub.clients c, pg_sleep({seconds}) WHERE NOT c.archived
        """
    )


async def test_a_slow_crm_raises_a_transient_error_and_writes_nothing(
    db, make_crm, crm_database, crm_conn
) -> None:
    await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await slow_down_customers_view(crm_conn, 2)
    slow = await make_crm(crm_database, statement_timeout_ms=200)

    with pytest.raises(CrmUnavailableError, match="cancel") as raised:
        await sync(db, slow, ProfileData("p1", email="ada@example.com"))

    assert isinstance(raised.value, TransientError)
    assert await db.fetchval("SELECT count(*) FROM profiles") == 0
    assert await db.fetchval("SELECT count(*) FROM crm_mappings") == 0


async def test_a_slow_crm_is_never_given_more_connections_than_the_pool_allows(
    make_crm, crm_database, crm_conn
) -> None:
    ada = await add_client(crm_conn, first_name="Ada", last_name="L", email="ada@example.com")
    await slow_down_customers_view(crm_conn, 0.3)
    crm = await make_crm(crm_database, max_size=2)

    lookups = [asyncio.create_task(crm.customers_by_email("ada@example.com")) for _ in range(6)]
    await asyncio.sleep(0.15)
    in_use = await crm_conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'crmsync'"
    )
    found = await asyncio.gather(*lookups)

    assert in_use == 2
    assert [[c.id for c in f] for f in found] == [[str(ada)]] * 6


async def test_an_unreachable_crm_raises_a_transient_error(db, make_crm) -> None:
    # Nothing listens on port 1; the pool opens no connection until asked.
    down = await make_crm("postgresql://postgres@127.0.0.1:1/crm")

    with pytest.raises(CrmUnavailableError, match="unavailable"):
        await sync(db, down, ProfileData("p1", email="ada@example.com"))
