"""A full pull lands every record of the sandbox company, with its foreign keys."""

from __future__ import annotations

from tests.repcard.helpers import log_rows, repcard_settings, run_pull, seed_company, table_counts


async def test_a_full_pull_lands_every_entity_with_true_counts_and_foreign_keys(
    make_syncer, database, namespace, sandbox, http, db
) -> None:
    expected = await seed_company(http, sandbox)
    await make_syncer(repcard_settings(database, namespace, sandbox))
    run = await run_pull(db, {"incremental": False})
    assert run["status"] == "succeeded", run["error"]
    assert await table_counts(db) == expected
    logs = await log_rows(db, run["id"])
    assert {e: r["status"] for e, r in logs.items()} == {e: "succeeded" for e in expected}
    for entity, row in logs.items():
        assert row["sync_type"] == "full"
        assert (row["records_fetched"], row["records_inserted"]) == (expected[entity],) * 2
        assert (row["records_updated"], row["records_failed"], row["records_unlinked"]) == (0, 0, 0)
    # Every child is linked to its parent (the sandbox's references are all valid).
    assert (
        await db.fetchval(
            "SELECT count(*) FROM repcard_appointments"
            " WHERE customer_id IS NULL OR setter_id IS NULL OR closer_id IS NULL"
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM repcard_status_logs s"
            " JOIN repcard_customers c ON c.id = s.customer_id"
        )
        == expected["status_logs"]
    )
    totals = run["totals"]
    assert totals["recordsInserted"] == sum(expected.values())
    assert totals["entitiesSucceeded"] == 7
    # A second full pull finds nothing changed: nothing is rewritten.
    again = await run_pull(db, {"incremental": False})
    assert again["status"] == "succeeded"
    assert again["totals"]["recordsUnchanged"] == sum(expected.values())
    assert again["totals"]["recordsInserted"] == again["totals"]["recordsUpdated"] == 0
