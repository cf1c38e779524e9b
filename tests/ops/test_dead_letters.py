"""Dead letters over AMQP alone: a poison body and a sandbox 422 end in
``syncer.orders.dead``; list, show, replay once the fault is gone (applied exactly
once), purge the poison; a replay killed between publish and ack loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap

import aio_pika
import pytest

from shared.events import CloudEvent
from shared.ops.dead_letters import (
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
    show_dead_letters,
)
from shared.topology import Topology
from tests.conftest import AMQP_URL, eventually
from tests.helpers import post_shopify, queue_depth
from tests.syncer.test_cancellations import (
    LATER,
    handled,
    order,
    paid,
    refund_of,
    seed_order,
    settled,
    tiers_by_status,
)

DEAD = "syncer.orders.dead"


@pytest.fixture
async def amqp():
    connection = await aio_pika.connect_robust(AMQP_URL)
    yield connection
    await connection.close()


async def add_fault(http, sandbox: str, **fault) -> None:
    async with http.post(f"{sandbox}/_sandbox/faults", json=fault) as resp:
        assert resp.status == 201, await resp.text()


async def publish_poison(amqp, namespace: str) -> str:
    """A Shopify order event whose body no handler can read (schema-invalid)."""
    event = CloudEvent.create(
        id="poison-1", type="shopify.orders.paid", source="urn:test", data=b'{"id": "x"}'
    )
    channel = await amqp.channel()
    exchange = await channel.get_exchange(f"{namespace}crmsync.events")
    await exchange.publish(
        aio_pika.Message(
            body=event.data,
            headers=event.amqp_headers(),
            message_id=event.id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=event.type,
    )
    await channel.close()
    return event.id


async def test_a_poison_body_and_a_422_are_listed_shown_replayed_once_and_purged(
    http, intake, syncer, sandbox, db, namespace, amqp
) -> None:
    topology = Topology(namespace)
    await paid(http, intake, id=1002, current_subtotal_price="600.00")  # Gold
    await eventually(lambda: settled(db, 1))
    refunded = order(id=1002, current_subtotal_price="100.00",
                     financial_status="partially_refunded", updated_at=LATER)  # fmt: skip
    await seed_order(http, sandbox, {"order": refunded})
    # The refund handler reads the order from Shopify: a 422 is permanent.
    await add_fault(http, sandbox, provider="shopify", method="GET", path=r"orders/1002\.json",
                    status=422)  # fmt: skip
    assert (await post_shopify(http, intake, body=refund_of(1002), topic="refunds/create"))[
        0
    ] == 200
    poison_id = await publish_poison(amqp, namespace)
    await eventually(lambda: _depth_is(f"{namespace}{DEAD}", 2), timeout_s=15)

    [summary] = await list_dead_letters(amqp, topology=topology, queue=DEAD)
    assert (summary.queue, summary.work_queue, summary.count) == (DEAD, "syncer.orders", 2)
    assert sum(summary.reasons.values()) == 2
    assert summary.oldest_age_s is not None and summary.oldest_age_s >= 0
    everything = await list_dead_letters(amqp, topology=topology)
    assert {s.queue for s in everything if s.count} == {DEAD}

    letters = await show_dead_letters(amqp, topology=topology, queue=DEAD)
    assert len(letters) == 2  # and still there
    by_type = {d.type: d for d in letters}
    refund = by_type["shopify.refunds.create"]
    assert "422" in (refund.reason or "") and refund.first_error == refund.reason
    assert refund.event_id == refund.message_id and refund.time is not None
    assert '"order_id": 1002' in refund.body_preview
    assert by_type["shopify.orders.paid"].message_id == poison_id
    assert "integer is required" in (by_type["shopify.orders.paid"].reason or "")
    assert await queue_depth(f"{namespace}{DEAD}") == 2

    dry = await replay_dead_letters(amqp, topology=topology, queue=DEAD, ids=[refund.message_id],
                                    dry_run=True)  # fmt: skip
    assert dry.replayed == [refund.message_id] and dry.dry_run
    assert await queue_depth(f"{namespace}{DEAD}") == 2

    async with http.delete(f"{sandbox}/_sandbox/faults") as resp:
        assert resp.status in (200, 204)
    result = await replay_dead_letters(
        amqp, topology=topology, queue=DEAD, ids=[refund.message_id, "no-such-id"]
    )
    assert result.replayed == [refund.message_id] and result.skipped == ["no-such-id"]
    await eventually(lambda: settled(db, 2), timeout_s=15)  # the downgrade, at the provider
    assert await tiers_by_status(db) == [("Gold", "revoked"), ("Bronze", "active")]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM processed_messages WHERE event_id = $1", refund.message_id
        )
        == 1
    )
    # Only the poison is left, in its place; purge it and the dead queue is empty.
    [left] = await show_dead_letters(amqp, topology=topology, queue=DEAD)
    assert left.message_id == poison_id
    assert await purge_dead_letters(amqp, topology=topology, queue=DEAD, ids=[poison_id]) == 1
    assert await queue_depth(f"{namespace}{DEAD}") == 0
    assert await handled(db, 2)  # the paid order and the refund, once each


async def _depth_is(queue: str, n: int) -> bool:
    return await queue_depth(queue) == n


# The replay, in a process of its own, stopped dead after the publish was confirmed
# and before the dead copy is acked.
_KILLED_REPLAY = textwrap.dedent(
    """
    import asyncio, sys
    import aio_pika
    from aio_pika.message import IncomingMessage
    from shared.ops.dead_letters import replay_dead_letters
    from shared.topology import Topology

    async def hang(self, multiple=False):
        print("published", flush=True)
        await asyncio.Event().wait()

    IncomingMessage.ack = hang

    async def main():
        connection = await aio_pika.connect_robust(sys.argv[1])
        await replay_dead_letters(connection, topology=Topology(sys.argv[2]),
                                  queue="syncer.orders.dead", all=True)

    asyncio.run(main())
    """
)


async def test_a_replay_killed_between_publish_and_ack_loses_nothing(
    http, make_syncer, database, namespace, sandbox, db, amqp
) -> None:
    from shared.broker import Broker
    from shared.queues import ORDERS
    from tests.conftest import syncer_settings
    from tests.helpers import shopify_order

    broker = Broker(AMQP_URL, Topology(namespace), [ORDERS], name="tests-dead-letters")
    await broker.wait_ready()
    event = CloudEvent.create(id="order-kill-1", type="shopify.orders.paid", source="urn:test",
                              data=shopify_order())  # fmt: skip
    await broker.publish_dead(namespace + "syncer.orders", event, attempt=3, error="boom")
    await broker.close()
    dead, work = f"{namespace}{DEAD}", f"{namespace}syncer.orders"
    assert await queue_depth(dead) == 1

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_REPLAY, AMQP_URL, namespace,
        stdout=asyncio.subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"published"
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    # Confirmed in the work queue, and the unacked dead copy back in its queue.
    await eventually(lambda: _depth_is(dead, 1), timeout_s=15)
    assert await queue_depth(work) == 1

    # Replayed again (the operator did not know): two copies, one effect.
    result = await replay_dead_letters(amqp, topology=Topology(namespace), queue=DEAD, all=True)
    assert result.replayed == ["order-kill-1"]
    assert await queue_depth(dead) == 0 and await queue_depth(work) == 2
    [message] = [m for m in await _peek(amqp, work)][:1]
    assert message.headers["x-crmsync-attempt"] == 1
    assert "x-crmsync-error" not in message.headers
    await make_syncer(syncer_settings(database, namespace, sandbox))
    await eventually(lambda: settled(db, 1), timeout_s=15)
    await eventually(lambda: _depth_is(work, 0), timeout_s=15)
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert (
        await db.fetchval("SELECT count(*) FROM processed_messages WHERE event_id = 'order-kill-1'")
        == 1
    )


async def _peek(amqp, queue: str) -> list:
    channel = await amqp.channel()
    q = await channel.get_queue(queue)
    message = await q.get(no_ack=False, fail=False)
    out = [message] if message is not None else []
    await channel.close()  # unacked: back in the queue
    return out
