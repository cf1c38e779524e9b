"""A bulk run counts the profiles it could not match apart from the successful ones."""

from __future__ import annotations

import asyncpg

from shared.jobs import PACKAGES_BULK_SYNC
from tests.conftest import syncer_settings
from tests.packages.test_packages_e2e import seed_profiles
from tests.syncer.test_job_failures import ended, trigger


async def test_unmatched_profiles_are_not_counted_as_successful(
    make_syncer, database, namespace, sandbox, make_crm_database, db
) -> None:
    crm_dsn = await make_crm_database()
    crm_conn = await asyncpg.connect(crm_dsn)
    try:
        await seed_profiles(db, crm_conn, 4)
    finally:
        await crm_conn.close()
    # Two profiles no CRM customer matches (no such email, no phone, no name).
    await db.execute(
        "INSERT INTO profiles (profile_id, email) VALUES"
        " ('nobody-1', 'nobody1@example.test'), ('nobody-2', 'nobody2@example.test')"
    )
    await make_syncer(syncer_settings(database, namespace, sandbox, crm_database_url=crm_dsn))
    run = await ended(db, await trigger(db, PACKAGES_BULK_SYNC, {"batchSize": 4}), timeout_s=40)
    totals = run["totals"]
    assert run["status"] == "succeeded", run["error"]
    assert totals["totalProfiles"] == 6
    assert (totals["successfulProfiles"], totals["unmatchedProfiles"]) == (4, 2)
    assert totals["failedProfiles"] == 0
    assert totals["totalPackages"] == 4
