"""Single-contact notifications batched while the syncer is behind
(services/syncer/credits_batch.py): the same end state as one at a time, claims
exactly once across replicas, and no notification fails because of another."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from services.syncer.consumers.credits import handle_credits
from services.syncer.credits_batch import CreditBatcher
from shared.events import CloudEvent
from shared.messages.credits import CREDITS_CHANGED, CreditsNotification
from shared.queues import CREDITS
from tests.credits.test_credits_bulk import make_db, seed, state

__all__ = ["make_db"]  # the fixture, imported to be found

# Over the seeded contacts of test_credits_bulk (st-1/hs-1, st-2, three@example.test,
# hs-4, st-5, st-6 with stale versions, st-7, taken@example.test) and new ones.
SINGLES: list[dict[str, Any]] = [
    {"contact": {"hubspotId": "hs-1"}, "credits": {"sj_credits": 6}, "version": 11},
    {"contact": {"studentId": "st-2", "email": "two@example.test"},  # learns an email
     "credits": {"sj_credits": 2, "cs_credits": 3}, "version": 1},
    {"contact": {"email": "THREE@example.test"}, "credits": {"shared_mock_credits": 4},
     "version": 7},
    {"contact": {"hubspotId": "hs-4"}, "credits": {"sj_credits": 1}, "version": 2},
    {"contact": {"studentId": "st-6"}, "credits": {"sj_credits": 1, "cs_credits": 2},
     "version": 49},  # every field stale: claimed, nothing else
    {"contact": {"studentId": "st-7"}, "credits": {"sj_credits": 8, "cs_credits": 8},
     "version": 21},  # sj fresh, cs stale
    {"contact": {"studentId": "st-new", "email": "New@Example.test"},
     "credits": {"mock_discussion_token": 1}, "version": 1},
    {"contact": {"email": "only@example.test"}, "credits": {"sjmini_credits": 2}, "version": 3},
    {"contact": {"studentId": "st-5"}, "credits": {"cs_credits": 0}, "version": 1},
]  # fmt: skip


def event_of(body: dict[str, Any], key: str) -> CloudEvent:
    note = CreditsNotification.model_validate(
        {
            "idempotencyKey": key,
            "reason": "booking_created",
            "occurredAt": "2026-11-21T10:00:00Z",
            **body,
        }
    )
    return CloudEvent.create(
        id=f"booking-api:{key}", type=CREDITS_CHANGED, source="urn:test", data=note
    )


async def end_state(db: Any) -> dict[str, list[Any]]:
    """``state`` with the audit rows in contact and version order, their ids left out:
    notifications that run alone after a batch gave way run concurrently."""
    rows = await state(db)
    audit = [{k: v for k, v in r.items() if k != "id"} for r in rows["audit"]]
    rows["audit"] = sorted(audit, key=lambda r: (r["entity_id"], r["entity_version"]))
    return rows


def deps_of(db: Any, batcher: CreditBatcher, poked: list[int]) -> Any:
    return SimpleNamespace(
        pool=db, contact_pusher=SimpleNamespace(poke=poked.extend), credit_batcher=batcher
    )


async def one_at_a_time(db: Any, events: list[CloudEvent]) -> list[int]:
    """The reference: each notification handled alone, in order."""
    poked: list[int] = []
    deps = deps_of(db, CreditBatcher(db, CREDITS.name), poked)
    for event in events:
        await handle_credits(event, None, deps)  # type: ignore[arg-type]
    return poked


async def at_once(batcher: CreditBatcher, db: Any, events: list[CloudEvent]) -> list[int]:
    """Every notification handed to ``batcher`` at the same moment."""
    poked: list[int] = []
    deps = deps_of(db, batcher, poked)
    await asyncio.gather(*(handle_credits(e, None, deps) for e in events))  # type: ignore[arg-type]
    return poked


async def test_a_batch_ends_as_one_notification_at_a_time(db, make_db) -> None:
    alone_db = await make_db()
    await seed(db)
    await seed(alone_db)
    events = [event_of(body, f"n-{i}") for i, body in enumerate(SINGLES)]
    batcher = CreditBatcher(db, CREDITS.name, direct_limit=0)
    poked = await at_once(batcher, db, events)
    assert batcher.batches >= 1 and batcher.batched >= len(events) - 1
    assert sorted(poked) == sorted(await one_at_a_time(alone_db, events))
    assert await state(db) == await state(alone_db)
    # And again: every claim holds, nothing changes.
    before = await state(db)
    assert await at_once(batcher, db, events) == []
    assert await state(db) == before


async def test_notifications_for_one_student_apply_in_order(db, make_db) -> None:
    alone_db = await make_db()
    bodies = [
        {"contact": {"studentId": "st-9"}, "credits": {"sj_credits": n}, "version": v}
        for n, v in ((5, 5), (4, 4), (6, 6), (7, 6))  # an older one, then a repeat version
    ]
    events = [event_of(body, f"s-{i}") for i, body in enumerate(bodies)]
    batcher = CreditBatcher(db, CREDITS.name, direct_limit=0)
    await at_once(batcher, db, events)
    await one_at_a_time(alone_db, events)
    assert await state(db) == await state(alone_db)
    row = await db.fetchrow("SELECT balance, version FROM contact_credits")
    assert (row["balance"], row["version"]) == (6, 6)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 2  # versions 5 and 6


async def test_one_contact_by_two_keys_in_a_batch_runs_alone(db) -> None:
    await seed(db)
    bodies = [  # st-1 and one@example.test are the same contact
        {"contact": {"studentId": "st-1"}, "credits": {"sj_credits": 1}, "version": 11},
        {"contact": {"email": "one@example.test"}, "credits": {"sj_credits": 2}, "version": 12},
        {"contact": {"studentId": "st-5"}, "credits": {"sj_credits": 3}, "version": 1},
    ]
    events = [event_of(body, f"k-{i}") for i, body in enumerate(bodies)]
    batcher = CreditBatcher(db, CREDITS.name, direct_limit=0, min_batch=2)
    # The first goes on its own at once; the other three meet in one batch, which
    # gives way: each then runs alone (concurrently, as separate deliveries would).
    await at_once(batcher, db, [event_of(SINGLES[3], "warm"), *events])
    assert (batcher.batches, batcher.batched) == (1, 3)
    rows = await db.fetch(
        "SELECT c.student_id, cc.balance, cc.version FROM contact_credits cc"
        " JOIN contacts c ON c.id = cc.contact_id WHERE cc.credit_type = 'sj_credits'"
        " ORDER BY c.id"
    )
    assert [tuple(r) for r in rows][:3] == [("st-1", 2, 12), (None, 1, 2), ("st-5", 3, 1)]
    assert await db.fetchval("SELECT count(*) FROM processed_messages") == 4


async def test_the_same_notification_at_once_on_two_replicas_is_applied_once(db) -> None:
    students, versions = 40, 5
    events = [
        event_of(
            {"contact": {"studentId": f"st-r{s}"}, "credits": {"sj_credits": v}, "version": v},
            f"r-{s}-{v}",
        )
        for v in range(1, versions + 1)
        for s in range(students)
    ]
    replicas = [CreditBatcher(db, CREDITS.name, direct_limit=1) for _ in range(2)]
    pokes = await asyncio.gather(*(at_once(r, db, events) for r in replicas))
    assert all(r.batched > 0 for r in replicas)
    claims = await db.fetchval("SELECT count(*) FROM processed_messages")
    assert claims == len(events)
    balances = await db.fetch("SELECT balance, version FROM contact_credits")
    assert len(balances) == students
    assert {(r["balance"], r["version"]) for r in balances} == {(versions, versions)}
    # Each contact is handed to a pusher once per applied change: never more changes
    # than notifications, and every audit row has its own notification.
    audits = await db.fetch("SELECT event_id FROM audit_log")
    assert len(audits) == len({r["event_id"] for r in audits}) <= len(events)
    assert len(pokes[0]) + len(pokes[1]) == len(audits)


@pytest.fixture
async def poison(db) -> None:
    """A balance of 666 is refused by the database (one notification's bad data)."""
    await db.execute(
        """
        CREATE FUNCTION refuse_666() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.balance = 666 THEN RAISE EXCEPTION 'refused balance 666'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_666 BEFORE INSERT OR UPDATE ON contact_credits
            FOR EACH ROW EXECUTE FUNCTION refuse_666();
        """
    )


async def test_one_bad_notification_fails_alone_not_its_batch(db, poison) -> None:
    bodies = [
        {"contact": {"studentId": f"st-p{i}"}, "credits": {"sj_credits": 666 if i == 2 else i},
         "version": 1}
        for i in range(6)
    ]  # fmt: skip
    events = [event_of(body, f"p-{i}") for i, body in enumerate(bodies)]
    poked: list[int] = []
    batcher = CreditBatcher(db, CREDITS.name, direct_limit=0)
    deps = deps_of(db, batcher, poked)
    results = await asyncio.gather(
        *(handle_credits(e, None, deps) for e in events),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert (batcher.batches, batcher.batched) == (1, 5)  # the first went alone
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [2]
    assert isinstance(results[2], asyncpg.RaiseError)
    claimed = {r["event_id"] for r in await db.fetch("SELECT event_id FROM processed_messages")}
    assert claimed == {e.id for i, e in enumerate(events) if i != 2}  # 2 can be retried
    assert len(poked) == 5
