"""The sample CRM (``crmsync seed-crm``): its mess, its idempotence, and matching over it."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, date, datetime

import asyncpg
import pytest
from click.testing import CliRunner

from services.sandbox.crm_cli import seed_crm
from services.sandbox.crmdb import SeedRefusedError, seed_crm_database
from services.syncer.packages import ProfileData, sync_profile

TODAY = date(2026, 11, 21)


async def test_the_sample_crm_has_the_usual_mess(make_crm_database) -> None:
    dsn = await make_crm_database(customers=0)
    summary = await seed_crm_database(dsn, customers=600, today=TODAY)

    assert 560 < summary.customers < 600 and summary.archived_clients > 0
    assert summary.customers_without_packages > 60
    assert summary.expired_packages > 50 and summary.used_up_packages > 20
    assert summary.shared_full_names > 20 and summary.shared_phones > 3
    conn = await asyncpg.connect(dsn)
    try:
        emails = [r[0] for r in await conn.fetch("SELECT email FROM crm_customers")]
        phones = [r[0] for r in await conn.fetch("SELECT phone FROM crm_customers")]
    finally:
        await conn.close()
    assert None in emails and None in phones
    assert any(e and e != e.lower() for e in emails) and any(e and e == e.lower() for e in emails)
    shapes = {re.sub(r"\d", "9", p) for p in phones if p}
    assert {"(999) 999-9999", "999.999.9999", "+9 999 999 9999", "9999999999"} <= shapes


async def test_seeding_again_gives_the_same_data(make_crm_database) -> None:
    dsn = await make_crm_database(customers=200, seed=7)
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetch("SELECT * FROM crm_customers ORDER BY id")
        await seed_crm_database(dsn, customers=200, seed=7)
        assert await conn.fetch("SELECT * FROM crm_customers ORDER BY id") == before
        # New rows continue after the seeded numbers.
        assert (
            await conn.fetchval(
                "INSERT INTO bayclub.clients (given_name, family_name) VALUES ('A', 'B')"
                " RETURNING client_no"
            )
            == 201
        )
    finally:
        await conn.close()


async def test_seeding_refuses_a_schema_it_did_not_create(make_crm_database) -> None:
    dsn = await make_crm_database()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("COMMENT ON SCHEMA bayclub IS 'the real CRM'")
    finally:
        await conn.close()

    with pytest.raises(SeedRefusedError):
        await seed_crm_database(dsn, customers=10)


def test_the_seed_crm_command_seeds_the_configured_database(monkeypatch, crm_database) -> None:
    monkeypatch.setenv("CRMSYNC_CRM_DATABASE_URL", crm_database)
    result = CliRunner().invoke(seed_crm, ["--customers", "50"])
    assert result.exit_code == 0, result.output
    assert "customers_without_packages:" in result.output


async def test_profiles_made_from_crm_customers_are_never_matched_to_someone_else(
    db, make_crm_database, make_crm
) -> None:
    """Each live CRM customer logs in with its email in another case and its phone in
    another format; whatever matches must be that very customer."""
    dsn = await make_crm_database(customers=400)
    crm = await make_crm(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        customers = await conn.fetch("SELECT id::text AS key, * FROM crm_customers ORDER BY id")
    finally:
        await conn.close()
    now = datetime.now(UTC)
    results = {}
    for c in customers:
        digits = re.sub(r"\D", "", c["phone"] or "")
        profile = ProfileData(
            f"app-{c['key']}",
            email=c["email"].swapcase() if c["email"] else None,
            phone=f"+1 ({digits[-10:-7]}) {digits[-7:-4]}-{digits[-4:]}" if digits else None,
            first_name=(c["first_name"] or "").upper(),
            last_name=c["last_name"],
        )
        results[c["key"]] = await sync_profile(db, crm, profile, now=now)

    wrong = {k: asdict(r) for k, r in results.items() if r.crm_customer_id not in (None, k)}
    assert wrong == {}
    matched = [r for r in results.values() if not r.unmatched]
    assert len(matched) > 0.9 * len(results)
    assert {r.method for r in matched} >= {"email", "phone"}
