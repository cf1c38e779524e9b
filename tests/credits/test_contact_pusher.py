"""The real-time HubSpot pusher (services/syncer/hubspot/pusher.py): contacts due in
Postgres reach HubSpot under a lease, once per replica set, whatever stops or fails,
against the real Postgres and the HubSpot sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from services.syncer.hubspot.batch_sync import BatchSync
from services.syncer.hubspot.pusher import ContactPusher
from shared.clients.hubspot import HubSpotClient
from shared.metrics import HUBSPOT_CONTACT_PUSHES
from shared.supervisor import Supervisor
from tests.conftest import eventually, syncer_settings


async def seed(db, n: int, *, due: str | None = "now()", start: int = 0) -> list[int]:
    """``n`` contacts with a balance, pending in HubSpot, due as ``due`` (SQL) says."""
    ids = []
    for i in range(start, start + n):
        ids.append(
            await db.fetchval(
                f"INSERT INTO contacts (student_id, email, change_version, hubspot_push_due_at)"
                f" VALUES ($1, $2, 2, {due or 'NULL'}) RETURNING id",
                f"st-{i}",
                f"st-{i}@example.test",
            )
        )
    await db.executemany(
        "INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason,"
        " occurred_at) VALUES ($1, 'sj_credits', 5, 1, 'admin_refund', now())",
        [(i,) for i in ids],
    )
    return ids


async def change(db, contact_id: int, balance: int) -> None:
    """What a credit writer does: the balance, the version, the due mark, one transaction."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE contact_credits SET balance = $2, version = version + 1 WHERE contact_id = $1",
            contact_id,
            balance,
        )
        await conn.execute(
            "UPDATE contacts SET change_version = change_version + 1,"
            " hubspot_push_due_at = coalesce(hubspot_push_due_at, now()) WHERE id = $1",
            contact_id,
        )


async def hubspot_contacts(http, sandbox: str) -> dict[str, dict[str, str]]:
    async with http.get(f"{sandbox}/_sandbox/hubspot/objects/contacts") as resp:
        records = (await resp.json())["results"]
    return {r["properties"].get("email", ""): r["properties"] for r in records}


async def fault(http, sandbox: str, **spec: Any) -> str:
    async with http.post(f"{sandbox}/_sandbox/faults", json={"provider": "hubspot", **spec}) as r:
        assert r.status == 201, await r.text()
        fault_id: str = (await r.json())["id"]
        return fault_id


class Replica:
    """One syncer replica's pusher, with its sweep supervised, and a record of every
    contact it put on the wire (spying on its real client's batch calls)."""

    def __init__(self, pusher: ContactPusher) -> None:
        self.pusher = pusher
        self.sent: list[int] = []
        self.on_wire: set[int] = set()
        self.supervisor = Supervisor()
        for name in ("batch_update", "batch_upsert"):
            setattr(pusher.hubspot, name, self._spy(getattr(pusher.hubspot, name)))

    def _spy(self, call: Callable[..., Any]) -> Callable[..., Any]:
        async def spied(object_type: str, inputs: Sequence[Any]) -> Any:
            ids = [int(i.object_write_trace_id) for i in inputs]
            self.sent += ids
            self.on_wire.update(ids)
            try:
                return await call(object_type, inputs)
            finally:
                self.on_wire.difference_update(ids)

        return spied

    def start(self) -> None:
        self.supervisor.spawn("hubspot-pusher", self.pusher.run)


@pytest.fixture
async def replica(db, database, http, sandbox) -> AsyncIterator[Callable[..., Replica]]:
    made: list[Replica] = []

    def make(**overrides: Any) -> Replica:
        values = {"hubspot_push_window_s": 0.05, "hubspot_push_sweep_s": 0.2, **overrides}
        settings = syncer_settings(database, "unused", sandbox, **values)
        client = HubSpotClient.from_settings(http, settings)
        made.append(Replica(ContactPusher.from_settings(db, client, settings)))
        return made[-1]

    yield make
    for r in made:
        await r.supervisor.stop()
        await r.pusher.drain()


def check(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """``condition`` as a probe for ``eventually``."""

    async def probe() -> bool:
        return condition()

    return probe


def synced(db, n: int) -> Callable[[], Any]:
    return lambda: db.fetchval(
        "SELECT count(*) = $1 FROM contacts"
        " WHERE hubspot_synced_version = change_version AND hubspot_push_due_at IS NULL",
        n,
    )


async def test_two_replicas_send_each_contact_once_and_never_at_the_same_time(
    db, replica, http, sandbox
) -> None:
    await fault(http, sandbox, latency_ms=150)
    ids = await seed(db, 250)
    a, b = replica(), replica()
    overlaps: list[set[int]] = []

    async def watch() -> None:
        while True:
            if a.on_wire & b.on_wire:
                overlaps.append(a.on_wire & b.on_wire)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    # Both are told about every contact (as if each had committed them) and both sweep.
    a.pusher.poke(ids)
    b.pusher.poke(ids)
    a.start()
    b.start()
    await eventually(synced(db, 250), timeout_s=60)
    watcher.cancel()
    assert overlaps == []
    assert sorted(a.sent + b.sent) == ids  # each contact once, over both replicas
    assert a.sent and b.sent  # both took part
    assert len(await hubspot_contacts(http, sandbox)) == 250


async def test_a_contact_due_when_its_replica_stopped_is_sent_by_another_s_sweep(
    db, replica, http, sandbox
) -> None:
    # Committed and due, but the replica that committed it stopped before its push:
    # no one pokes it. Another replica's sweep finds it.
    [contact] = await seed(db, 1)
    other = replica()
    other.start()
    await eventually(synced(db, 1), timeout_s=20)
    assert (await hubspot_contacts(http, sandbox))["st-0@example.test"]["sj_credits"] == "5"
    assert other.sent == [contact]


async def test_the_lease_of_a_replica_that_died_holding_it_runs_out(db, replica) -> None:
    # A sender claimed it (its lease runs 1.5 s more) and died on the wire.
    [contact] = await seed(db, 1, due="now() + interval '1.5 seconds'")
    other = replica()
    other.pusher.poke([contact])
    other.start()
    await asyncio.sleep(0.8)
    assert other.sent == []  # still held: sending now could overtake the holder
    await eventually(synced(db, 1), timeout_s=20)
    assert other.sent == [contact]


async def test_a_failed_call_is_due_again_after_the_retry_delay(db, replica, http, sandbox) -> None:
    down = await fault(http, sandbox, status=503)
    [contact] = await seed(db, 1)
    r = replica(hubspot_push_retry_s=1.0)
    before = HUBSPOT_CONTACT_PUSHES.labels("call_failed")._value.get()
    r.pusher.poke([contact])
    failed = HUBSPOT_CONTACT_PUSHES.labels("call_failed")
    await eventually(check(lambda: failed._value.get() == before + 1), timeout_s=20)
    # Deferred by the retry delay, not held for the whole lease.
    assert await db.fetchval(
        "SELECT hubspot_push_due_at BETWEEN now() AND now() + interval '1 second' FROM contacts"
    )
    assert await db.fetchval("SELECT hubspot_synced_version FROM contacts") == 0
    async with http.delete(f"{sandbox}/_sandbox/faults/{down}"):
        pass
    r.start()
    await eventually(synced(db, 1), timeout_s=20)


async def test_a_change_made_while_the_contact_is_on_the_wire_is_sent_after_it(
    db, replica, http, sandbox
) -> None:
    await fault(http, sandbox, latency_ms=600)
    [contact] = await seed(db, 1)
    r = replica()
    r.pusher.poke([contact])
    await eventually(check(lambda: r.on_wire == {contact}), timeout_s=10)
    await change(db, contact, 9)  # the writer leaves the lease alone
    assert await db.fetchval("SELECT hubspot_push_due_at > now() FROM contacts")
    await eventually(synced(db, 1), timeout_s=20)
    assert r.sent == [contact, contact]
    assert (await hubspot_contacts(http, sandbox))["st-0@example.test"]["sj_credits"] == "9"
    assert await db.fetchval("SELECT hubspot_synced_version FROM contacts") == 3


async def test_a_record_hubspot_refuses_is_not_sent_again_until_it_changes(
    db, replica, http, sandbox
) -> None:
    bad = {"property": "email", "values": ["st-1@example.test"]}
    rule = {"objectType": "contacts", "match": bad}
    async with http.post(f"{sandbox}/_sandbox/hubspot/fail-records", json=rule) as resp:
        assert resp.status < 300, await resp.text()
    ids = await seed(db, 3)
    r = replica()
    r.start()
    refused = await eventually(
        lambda: db.fetchrow("SELECT * FROM contacts WHERE hubspot_error IS NOT NULL"),
        timeout_s=20,
    )
    assert refused["id"] == ids[1] and refused["hubspot_push_due_at"] is None
    await eventually(synced(db, 2))
    await asyncio.sleep(1.0)  # five sweeps
    assert sorted(r.sent) == ids  # the refused one once, not once per sweep
    await change(db, ids[1], 7)  # a new change makes it due again
    await eventually(check(lambda: r.sent.count(ids[1]) == 2), timeout_s=20)


async def test_the_batch_sync_leaves_a_contact_a_pusher_holds_to_it(
    db, http, sandbox, database
) -> None:
    held = await seed(db, 1, due="now() + interval '1 minute'")
    free = await seed(db, 2, due=None, start=1)
    settings = syncer_settings(database, "unused", sandbox)
    totals = await BatchSync(db, HubSpotClient.from_settings(http, settings), settings).run()
    assert totals.contacts.created == 2
    assert set(await hubspot_contacts(http, sandbox)) == {"st-1@example.test", "st-2@example.test"}
    rows = {r["id"]: r for r in await db.fetch("SELECT * FROM contacts")}
    assert rows[held[0]]["hubspot_synced_version"] == 0  # left to its holder
    assert all(rows[i]["hubspot_push_due_at"] is None for i in free)  # leases given back


def test_a_push_lease_shorter_than_a_call_is_refused() -> None:
    from pydantic import ValidationError

    from shared.settings import SyncerSettings

    with pytest.raises(ValidationError, match="hubspot_push_lease_s must be longer"):
        SyncerSettings(_env_file=None, hubspot_push_lease_s=5, http_timeout_s=10)
    assert SyncerSettings(_env_file=None, hubspot_push_lease_s=11, http_timeout_s=10)
