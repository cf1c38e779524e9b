"""A batch of credit changes in set-based statements (services/syncer/credits_bulk.py):
the same end state as the per-contact loop, idempotent, deadlock-free, constant
statement count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from services.syncer.consumers.credits import apply_change, handle_credits
from services.syncer.credits_batch import CreditBatcher
from services.syncer.credits_bulk import apply_batch
from services.syncer.credits_fast import apply_fast, can_take_fast_path
from shared.db import claim_message, create_pool
from shared.events import CloudEvent
from shared.messages.credits import CREDITS_CHANGED, CreditsNotification
from shared.queues import CREDITS
from tests.conftest import PG_ADMIN, _dsn, _template, eventually

# Existing contacts: (student_id, email, hubspot_id, first_name, last_name).
SEED_CONTACTS = [
    ("st-1", "one@example.test", "hs-1", "Una", None),  # 1: every key
    ("st-2", None, None, None, None),  # 2: learns an email and a HubSpot id
    (None, "Three@Example.test", None, None, None),  # 3: found by email, any case
    (None, None, "hs-4", None, None),  # 4: HubSpot id wins over 5's student id
    ("st-5", None, None, None, None),  # 5
    ("st-6", "six@example.test", None, None, None),  # 6: stale balances, learns names
    ("st-7", None, None, None, None),  # 7: one field stale, one fresh
    (None, "taken@example.test", None, None, None),  # 8: holds an email 7 would learn
]
# Existing balances: (contact row number, credit type, balance, version).
SEED_CREDITS = [(1, "sj_credits", 5, 10), (6, "sj_credits", 9, 50), (6, "cs_credits", 9, 50)]
SEED_CREDITS += [(7, "sj_credits", 1, 20), (7, "cs_credits", 1, 25)]

MIXED = [
    {"contact": {"hubspotId": "hs-1"}, "credits": {"sj_credits": 6}, "version": 11},
    {
        "contact": {"studentId": "st-2", "email": "two@example.test", "hubspotId": "hs-2"},
        "credits": {"sj_credits": 2, "Clinical Skills Token": 3},
        "version": 1,
    },
    {"contact": {"email": "three@EXAMPLE.test"}, "credits": {"shared_mock_credits": 4},
     "version": 7},
    {"contact": {"hubspotId": "hs-4", "studentId": "st-5"}, "credits": {"sj_credits": 1},
     "version": 2},
    {
        "contact": {"studentId": "st-6", "firstName": "Sam", "lastName": "Six"},
        "credits": {"sj_credits": 1, "cs_credits": 2},
        "version": 49,
    },
    {
        "contact": {"studentId": "st-7", "email": "taken@example.test"},
        "credits": {"sj_credits": 8, "cs_credits": 8},  # sj fresh (21 > 20), cs stale (25)
        "version": 21,
    },
    {
        "contact": {"studentId": "st-new", "email": "New@Example.test", "hubspotId": "hs-new",
                    "firstName": "Nia", "lastName": ""},
        "credits": {"mock_discussion_token": 1},
        "version": 1,
    },
    {"contact": {"email": "only@example.test"}, "credits": {"sjmini_credits": 2}, "version": 3},
    {"contact": {"hubspotId": "hs-absent", "studentId": "st-absent"},
     "credits": {"cs_credits": 0}, "version": 1},
]  # fmt: skip


def bulk_event(items: list[dict[str, Any]], key: str = "bulk-1") -> CloudEvent:
    note = CreditsNotification.model_validate(
        {
            "idempotencyKey": key,
            "reason": "bulk_refund",
            "occurredAt": "2026-11-21T10:00:00Z",
            "items": items,
        }
    )
    return CloudEvent.create(
        id=f"booking-api:{key}", type=CREDITS_CHANGED, source="urn:test", data=note
    )


def single_event(student_id: str, sj_credits: int) -> CloudEvent:
    note = CreditsNotification.model_validate(
        {
            "idempotencyKey": f"one-{student_id}",
            "reason": "booking_created",
            "occurredAt": "2026-11-21T10:00:00Z",
            "contact": {"studentId": student_id},
            "credits": {"shared_mock_credits": sj_credits},
            "version": 3,
        }
    )
    return CloudEvent.create(
        id=f"booking-api:one-{student_id}", type=CREDITS_CHANGED, source="urn:test", data=note
    )


class OneConnection:
    """A pool of one given connection (to count its statements)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn


@pytest.fixture
async def make_db() -> AsyncIterator[Any]:
    """``await make_db()``: a pool on another fresh migrated database (dropped after)."""
    template = await _template()
    made: list[tuple[str, Any]] = []

    async def make() -> Any:
        name = f"crmsync_t_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
        pool = await create_pool(_dsn(name), min_size=1, max_size=4)
        made.append((name, pool))
        return pool

    yield make
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        for name, pool in made:
            await pool.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def seed(db) -> None:
    for row in SEED_CONTACTS:
        await db.execute(
            "INSERT INTO contacts (student_id, email, hubspot_id, first_name, last_name)"
            " VALUES ($1, $2, $3, $4, $5)",
            *row,
        )
    for n, field, balance, version in SEED_CREDITS:
        await db.execute(
            "INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason,"
            " occurred_at) VALUES ($1, $2, $3, $4, 'admin_refund', '2026-11-01T00:00:00Z')",
            n,
            field,
            balance,
            version,
        )


async def run_loop(db, event: CloudEvent) -> None:
    """The per-contact loop as it ran before credits_bulk.py, for comparison."""
    note = event.data_as(CreditsNotification)
    async with db.acquire() as conn, conn.transaction():
        if await claim_message(conn, CREDITS.name, event.id):
            for change in note.changes():
                await apply_change(conn, change, note, event)


async def run_handler(db, event: CloudEvent) -> list[int]:
    """Run the handler; returns the contacts it handed to the pusher."""
    poked: list[int] = []
    deps = SimpleNamespace(
        pool=db,
        contact_pusher=SimpleNamespace(poke=poked.extend),
        credit_batcher=CreditBatcher(db, CREDITS.name),
    )
    await handle_credits(event, None, deps)  # type: ignore[arg-type]
    return poked


async def state(db) -> dict[str, list[Any]]:
    """Every row the credits path writes, timestamps aside (a contact due for HubSpot:
    ``due``; the outbox stays empty: pushes need no row of their own)."""
    contacts = await db.fetch(
        "SELECT id, student_id, email, hubspot_id, first_name, last_name, change_version,"
        " hubspot_synced_version, hubspot_push_due_at IS NOT NULL AS due"
        " FROM contacts ORDER BY id"
    )
    credits = await db.fetch(
        "SELECT contact_id, credit_type, balance, version, reason, occurred_at"
        " FROM contact_credits ORDER BY contact_id, credit_type"
    )
    audit = await db.fetch(
        "SELECT id, entity, entity_id, action, entity_version, details, event_id"
        " FROM audit_log ORDER BY id"
    )
    outbox = await db.fetch(
        "SELECT id, event_id, routing_key, headers, body, content_type FROM outbox ORDER BY id"
    )
    claims = await db.fetch("SELECT consumer, event_id FROM processed_messages ORDER BY 1, 2")
    pushes = []
    for row in outbox:
        push = dict(row)
        push["headers"] = {k: v for k, v in push["headers"].items() if k != "cloudEvents:time"}
        push["body"] = json.loads(push["body"])
        pushes.append(push)
    return {
        "contacts": [dict(r) for r in contacts],
        "credits": [dict(r) for r in credits],
        "audit": [dict(r) for r in audit],
        "outbox": pushes,
        "claims": [dict(r) for r in claims],
    }


async def test_a_mixed_batch_ends_as_the_loop_ends(db, make_db) -> None:
    loop_db = await make_db()
    await seed(db)
    await seed(loop_db)
    event = bulk_event(MIXED)
    async with db.acquire() as conn, conn.transaction():
        assert await claim_message(conn, CREDITS.name, event.id)
        note = event.data_as(CreditsNotification)
        due = await apply_batch(conn, note.changes(), note, event)
        assert due == [1, 2, 3, 4, 7, 9, 10, 11]  # not the loop: the changed, in batch order
    await run_loop(loop_db, event)
    after = await state(db)
    assert after == await state(loop_db)
    assert after["outbox"] == []
    assert [c["id"] for c in after["contacts"] if c["due"]] == due
    # What that state is, in brief: 6's balances were all stale (no bump, names learnt),
    # 7 kept cs_credits and did not learn 8's email, 4 (HubSpot id) won over 5.
    contacts = {c["id"]: c for c in after["contacts"]}
    assert contacts[6]["change_version"] == 1 and contacts[6]["first_name"] == "Sam"
    assert contacts[7]["email"] is None and contacts[7]["change_version"] == 2
    assert contacts[2]["email"] == "two@example.test" and contacts[2]["hubspot_id"] == "hs-2"
    assert contacts[5]["change_version"] == 1 and contacts[4]["change_version"] == 2
    assert contacts[9]["last_name"] == "" and contacts[9]["change_version"] == 2
    assert [a["entity_id"] for a in after["audit"]] == [1, 2, 3, 4, 7, 9, 10, 11]


async def test_one_known_contact_in_one_statement_ends_as_the_loop_ends(db, make_db) -> None:
    loop_db = await make_db()
    await seed(db)
    await seed(loop_db)
    event = bulk_event(MIXED[:1], key="one")  # hs-1: a known contact, no key to learn
    note = event.data_as(CreditsNotification)
    assert can_take_fast_path(note)
    outcome = await apply_fast(db, CREDITS.name, note.changes()[0], note, event)
    assert outcome.found and outcome.claimed and outcome.changed and outcome.contact_id == 1
    await run_loop(loop_db, event)
    after = await state(db)
    assert after == await state(loop_db)
    assert [c["id"] for c in after["contacts"] if c["due"]] == [1]
    assert after["outbox"] == []


async def test_one_new_contact_in_one_statement_ends_as_the_loop_ends(db, make_db) -> None:
    loop_db = await make_db()
    await seed(db)
    await seed(loop_db)
    event = bulk_event(MIXED[7:8], key="new")  # only@example.test: no row has it
    note = event.data_as(CreditsNotification)
    assert can_take_fast_path(note)
    warm_up = bulk_event(MIXED[:1], key="warm-up")  # asyncpg looks up its types once
    warm_note = warm_up.data_as(CreditsNotification)
    await run_loop(loop_db, warm_up)
    statements: list[str] = []
    async with db.acquire() as conn:
        await apply_fast(conn, CREDITS.name, warm_note.changes()[0], warm_note, warm_up)
        conn.add_query_logger(lambda record: statements.append(record.query))
        outcome = await apply_fast(conn, CREDITS.name, note.changes()[0], note, event)
        await asyncio.sleep(0)  # asyncpg schedules the logger's calls
    assert len(statements) == 1
    assert outcome.found and outcome.claimed and outcome.contact_id == 9
    await run_loop(loop_db, event)
    after = await state(db)
    assert after == await state(loop_db)
    assert after["contacts"][-1]["change_version"] == 2 and after["contacts"][-1]["due"]
    # Again: the claim holds, nothing more is created.
    again = await apply_fast(db, CREDITS.name, note.changes()[0], note, event)
    assert again.found and not again.claimed and not again.changed
    assert await state(db) == after


async def test_one_new_contact_twice_at_once_is_created_once(db) -> None:
    event = bulk_event(MIXED[7:8], key="new")
    results = await asyncio.gather(*(run_handler(db, event) for _ in range(4)))
    assert sorted(results) == [[], [], [], [1]]  # one delivery applied it
    assert await db.fetchval("SELECT count(*) FROM contacts") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_a_batch_whose_changes_meet_takes_the_loop_with_the_same_end(db, make_db) -> None:
    loop_db = await make_db()
    await seed(db)
    await seed(loop_db)
    items = [
        *MIXED,
        # The same contact as MIXED[1], by another key, newer and older than it.
        {"contact": {"hubspotId": "hs-2"}, "credits": {"sj_credits": 7}, "version": 2},
        {"contact": {"email": "TWO@example.test"}, "credits": {"cs_credits": 9}, "version": 0},
        # A new contact twice, by the same student id; the second learns an email.
        {"contact": {"studentId": "st-twice"}, "credits": {"sj_credits": 1}, "version": 1},
        {"contact": {"studentId": "st-twice", "email": "twice@example.test"},
         "credits": {"sj_credits": 2}, "version": 2},
    ]  # fmt: skip
    event = bulk_event(items)
    async with db.acquire() as conn, conn.transaction():
        note = event.data_as(CreditsNotification)
        assert await apply_batch(conn, note.changes(), note, event) is None
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0  # wrote nothing
    await run_handler(db, event)
    await run_loop(loop_db, event)
    after = await state(db)
    assert after == await state(loop_db)
    assert [c["change_version"] for c in after["contacts"] if c["student_id"] == "st-twice"] == [3]


async def test_the_same_batch_twice_changes_nothing(db) -> None:
    await seed(db)
    event = bulk_event(MIXED)
    assert await run_handler(db, event) == [1, 2, 3, 4, 7, 9, 10, 11]  # handed to the pusher
    before = await state(db)
    assert await run_handler(db, event) == []
    assert await state(db) == before
    assert len(before["claims"]) == 1


@pytest.mark.parametrize("new_contacts", [0, 20], ids=["known", "with-new"])
async def test_two_batches_over_the_same_contacts_at_once_do_not_deadlock(
    db, new_contacts: int
) -> None:
    # With new contacts, the later batch loses the race to create them and takes the loop.
    n = 400
    await db.execute(
        "INSERT INTO contacts (student_id, email) SELECT 'st-' || i, 'c' || i || '@example.test'"
        " FROM generate_series(0, $1 - 1) AS i",
        n,
    )

    def items(version: int, order: range) -> list[dict[str, Any]]:
        # Every other contact by email, so the two batches name rows by different keys;
        # the contacts neither batch knows yet in the two orders.
        out = [
            {
                "contact": {"studentId": f"st-{i}"} if i % 2 else {"email": f"C{i}@example.test"},
                "credits": {"sj_credits": version * 1000 + i, "cs_credits": version},
                "version": version,
            }
            for i in order
        ]
        out += [
            {"contact": {"studentId": f"new-{i}"}, "credits": {"sj_credits": version},
             "version": version}
            for i in (range(new_contacts) if version == 1 else range(new_contacts - 1, -1, -1))
        ]  # fmt: skip
        return out

    first = bulk_event(items(1, range(n)), key="bulk-a")
    second = bulk_event(items(2, range(n - 1, -1, -1)), key="bulk-b")
    singles = [single_event(f"st-{i}", i) for i in range(0, n, 37)]  # the fast path
    await asyncio.gather(*(run_handler(db, e) for e in (first, second, *singles)))
    rows = await db.fetch(
        "SELECT c.student_id, cc.credit_type, cc.balance, cc.version FROM contact_credits cc"
        " JOIN contacts c ON c.id = cc.contact_id"
    )
    got = {(r["student_id"], r["credit_type"]): (r["balance"], r["version"]) for r in rows}
    want = {(f"st-{i}", "sj_credits"): (2000 + i, 2) for i in range(n)}
    want |= {(f"st-{i}", "cs_credits"): (2, 2) for i in range(n)}
    want |= {(f"st-{i}", "shared_mock_credits"): (i, 3) for i in range(0, n, 37)}
    want |= {(f"new-{i}", "sj_credits"): (2, 2) for i in range(new_contacts)}
    assert got == want
    # Every contact that changed has one audit row per change (the batches: 2, or 1
    # where the second came first and the first was stale; the singles) and is due
    # for HubSpot; no outbox row is needed for that.
    assert await db.fetchval("SELECT count(*) FROM contacts") == n + new_contacts
    audits = await db.fetchval("SELECT count(*) FROM audit_log")
    versions = await db.fetchval("SELECT sum(change_version - 1) FROM contacts")
    assert audits == versions
    assert (
        await db.fetchval(
            "SELECT count(*) FROM contacts WHERE change_version > 1 AND hubspot_push_due_at IS NULL"
        )
        == 0
    )
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_bulk_refund_of_1000_contacts_takes_a_few_statements(db) -> None:
    await db.execute(
        "INSERT INTO contacts (student_id) SELECT 'st-' || i FROM generate_series(0, 499) AS i"
    )
    items = [
        {
            "contact": {"studentId": f"st-{i}", "email": f"s{i}@example.test"},
            "credits": {"shared_mock_credits": i, "sj_credits": 1},
            "version": 1,
        }
        for i in range(1000)  # 500 known (each learns an email), 500 new
    ]
    statements: list[str] = []

    def count(record: Any) -> None:
        statements.append(record.query)

    async with db.acquire() as conn:
        # A first batch on this connection: asyncpg looks up the array types once.
        await run_handler(OneConnection(conn), bulk_event(items[:2], key="warm-up"))
        conn.add_query_logger(count)
        await run_handler(OneConnection(conn), bulk_event(items))
        await asyncio.sleep(0)  # asyncpg schedules the logger's calls
        conn.remove_query_logger(count)
    # BEGIN, claim, LOCK_SQL, SAVEPOINT, APPLY_SQL, RELEASE, COMMIT.
    assert len(statements) == 7, statements
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE change_version = 2") == 1000
    assert (
        await db.fetchval("SELECT count(*) FROM contacts WHERE hubspot_push_due_at <= now()")
        == 1000
    )
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert await db.fetchval("SELECT count(*) FROM contact_credits") == 2000


async def test_a_new_contact_another_transaction_creates_first_goes_through_the_loop(db) -> None:
    await seed(db)
    event = bulk_event(
        [
            *MIXED,
            {"contact": {"studentId": "st-race"}, "credits": {"sj_credits": 4}, "version": 1},
        ]
    )
    async with db.acquire() as other:
        tx = other.transaction()
        await tx.start()
        race_id = await other.fetchval(
            "INSERT INTO contacts (student_id, first_name) VALUES ('st-race', 'Ray') RETURNING id"
        )
        handler = asyncio.create_task(run_handler(db, event))
        # The batch's insert of st-race waits on this transaction's, then fails on commit.
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
        await tx.commit()
        await handler
    rows = await db.fetch("SELECT id, first_name FROM contacts WHERE student_id = 'st-race'")
    assert [tuple(r) for r in rows] == [(race_id, "Ray")]
    assert (
        await db.fetchval("SELECT balance FROM contact_credits WHERE contact_id = $1", race_id) == 4
    )
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 9  # MIXED's 8, and st-race
