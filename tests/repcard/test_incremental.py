"""Incremental pulls, date ranges and skip flags fetch exactly what they should."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.repcard.helpers import (
    SMALL,
    TABLES,
    log_rows,
    repcard_settings,
    run_pull,
    sandbox_call,
    seed_company,
    table_counts,
)


async def test_an_incremental_pull_fetches_exactly_the_edited_and_added_records(
    make_syncer, database, namespace, sandbox, http, db
) -> None:
    await seed_company(http, sandbox)
    await make_syncer(repcard_settings(database, namespace, sandbox))
    full = await run_pull(db, {"incremental": False})
    assert full["status"] == "succeeded", full["error"]
    edited = [3_000_001 + i * 7 for i in range(5)]
    for customer_id in edited:
        await sandbox_call(
            http, "PATCH", f"{sandbox}/_sandbox/repcard/customers/{customer_id}", {"city": "Tempe"}
        )
    for _ in range(3):
        await sandbox_call(
            http, "POST", f"{sandbox}/_sandbox/repcard/appointments",
            {"title": "Follow-up", "contact": {"id": edited[0]}, "setter": {"id": 1_000_001},
             "closer": {"id": 1_000_002}, "status": {"id": 2, "title": "Appointment Set"},
             "startAt": "2026-12-24 10:00:00"},
        )  # fmt: skip
    run = await run_pull(db, {"incremental": True})
    assert run["status"] == "succeeded", run["error"]
    logs = await log_rows(db, run["id"])
    customers, appointments = logs["customers"], logs["appointments"]
    assert (customers["records_fetched"], customers["records_updated"]) == (5, 5)
    assert customers["records_inserted"] == 0
    assert (appointments["records_fetched"], appointments["records_inserted"]) == (3, 3)
    assert logs["status_logs"]["records_fetched"] == 0  # none changed today
    assert logs["customer_attachments"]["records_fetched"] == 0
    # Users and offices take no date filter: fetched whole, nothing rewritten.
    assert logs["users"]["records_unchanged"] == SMALL["users"]
    assert logs["users"]["records_updated"] == 0
    assert {r["sync_type"] for r in logs.values()} == {"incremental"}
    assert await db.fetchval("SELECT count(*) FROM repcard_customers WHERE city = 'Tempe'") == 5
    assert (
        await db.fetchval(
            "SELECT count(*) FROM repcard_appointments"
            " WHERE title = 'Follow-up' AND customer_id = $1",
            edited[0],
        )
        == 3
    )
    cursors = await db.fetch("SELECT * FROM repcard_sync_cursors")
    assert {c["entity_type"] for c in cursors} == set(TABLES)
    assert {c["run_id"] for c in cursors} == {run["id"]}
    assert {c["window_end"] for c in cursors} == {datetime.now(UTC).date()}


async def test_a_date_range_pulls_only_that_window_and_leaves_the_cursors(
    make_syncer, database, namespace, sandbox, http, db
) -> None:
    await seed_company(http, sandbox)
    await make_syncer(repcard_settings(database, namespace, sandbox))
    start, end = "2026-06-01", "2026-07-31"
    headers = {"x-api-key": "sandbox-repcard-key"}
    window = f"from_date={start}&to_date={end}&per_page=1"
    expected = {}
    for entity, path in (("customers", "customers"), ("appointments", "appointments"),
                         ("customer_attachments", "customers/attachments")):  # fmt: skip
        async with http.get(f"{sandbox}/repcard/{path}?{window}", headers=headers) as r:
            expected[entity] = (await r.json())["result"]["total"]
    assert all(0 < n < SMALL[e] for e, n in expected.items())
    run = await run_pull(db, {"startDate": start, "endDate": end})
    assert run["status"] == "succeeded", run["error"]
    counts = await table_counts(db)
    assert {e: counts[e] for e in expected} == expected
    logs = await log_rows(db, run["id"])
    assert {r["sync_type"] for r in logs.values()} == {"range"}
    assert str(logs["customers"]["from_date"]) == start
    assert await db.fetchval("SELECT count(*) FROM repcard_sync_cursors") == 0


async def test_skip_flags_skip_exactly_those_entities(
    make_syncer, database, namespace, sandbox, http, db
) -> None:
    expected = await seed_company(http, sandbox)
    await make_syncer(repcard_settings(database, namespace, sandbox))
    run = await run_pull(
        db, {"incremental": False, "skipStatusLogs": True, "skipAppointmentAttachments": True}
    )
    assert run["status"] == "succeeded", run["error"]
    skipped = {"status_logs", "appointment_attachments"}
    logs = await log_rows(db, run["id"])
    assert {e for e, r in logs.items() if r["status"] == "skipped"} == skipped
    counts = await table_counts(db)
    assert {e: n for e, n in counts.items() if e not in skipped} == {
        e: n for e, n in expected.items() if e not in skipped
    }
    assert all(counts[e] == 0 for e in skipped)
    assert run["totals"]["entitiesSkipped"] == 2
