"""A bulk run whose chunk is dead-lettered ends ``failed`` with its counts and the
chunk's error, instead of staying ``running``."""

from __future__ import annotations

import asyncpg

from shared.jobs import PACKAGES_BULK_SYNC
from shared.topology import Topology
from tests.conftest import syncer_settings
from tests.helpers import get_messages
from tests.packages.test_packages_e2e import seed_profiles
from tests.syncer.test_job_failures import ended, trigger


async def test_a_bulk_run_whose_chunk_is_dead_lettered_ends_failed_with_its_counts(
    make_syncer, database, namespace, sandbox, make_crm_database, db
) -> None:
    crm_dsn = await make_crm_database()
    crm_conn = await asyncpg.connect(crm_dsn)
    try:
        await seed_profiles(db, crm_conn, 30)
    finally:
        await crm_conn.close()
    # bulk-7 (in the first chunk of 10) takes 3 s to write: past the chunk's deadline,
    # on every attempt.
    await db.execute(
        """
        CREATE FUNCTION slow_bulk_7() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.profile_id = 'bulk-7' THEN PERFORM pg_sleep(3); END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER slow_bulk_7 BEFORE INSERT ON packages
            FOR EACH ROW EXECUTE FUNCTION slow_bulk_7();
        """
    )
    await make_syncer(
        syncer_settings(
            database, namespace, sandbox, crm_database_url=crm_dsn, handler_max_attempts=2,
            queue_deadlines_s={"syncer.packages.chunks": 1.5},
        )
    )  # fmt: skip
    run_id = await trigger(db, PACKAGES_BULK_SYNC, {"batchSize": 10})
    run = await ended(db, run_id, timeout_s=40)
    totals = run["totals"]
    assert run["status"] == "failed"
    assert (totals["chunks"], totals["chunksDone"], totals["deadChunks"]) == (3, 3, 1)
    assert (totals["successfulProfiles"], totals["failedProfiles"]) == (20, 10)
    assert "dead-lettered" in run["error"] and "deadline" in run["error"]
    assert any("chunk" in e and "deadline" in e for e in totals["errors"])
    dead_queue = Topology(namespace).dead_queue("syncer.packages.chunks")
    assert len(await get_messages(dead_queue)) == 1
