"""Two syncer processes share one full pull; its totals add up exactly."""

from __future__ import annotations

from tests.conftest import eventually, free_port, ready
from tests.repcard.helpers import log_rows, run_pull, seed_company, table_counts


async def test_two_syncer_processes_share_a_full_pull_with_exact_totals(
    spawn_syncer, sandbox, http, db
) -> None:
    expected = await seed_company(http, sandbox)
    env = {
        "CRMSYNC_REPCARD_RATE_REQUESTS": "1000", "CRMSYNC_REPCARD_RATE_PERIOD_S": "1",
        "CRMSYNC_REPCARD_REPLICAS": "2", "CRMSYNC_REPCARD_PER_PAGE": "20",
    }  # fmt: skip
    ports = [free_port(), free_port()]
    for port in ports:
        await spawn_syncer(port, **env)
    for port in ports:
        await eventually(lambda port=port: ready(http, port), timeout_s=60, interval_s=0.2)
    run = await run_pull(db, {"incremental": False}, timeout_s=120)
    assert run["status"] == "succeeded", run["error"]
    assert await table_counts(db) == expected
    logs = await log_rows(db, run["id"])
    for entity, row in logs.items():
        assert row["records_inserted"] == expected[entity], entity
        assert row["records_updated"] == row["records_failed"] == 0
        assert row["chunks_done"] == row["chunks"]
    assert run["totals"]["recordsInserted"] == sum(expected.values())
    # Every chunk was handled once (claimed once), whichever process took it.
    chunks = sum(r["chunks"] for r in logs.values())
    claimed = await db.fetchval(
        "SELECT count(*) FROM processed_messages WHERE consumer LIKE '%repcard.chunks'"
    )
    assert claimed == chunks
