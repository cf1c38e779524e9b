"""The outbox relay marks each row by its own result, against real Postgres and RabbitMQ.

A row RabbitMQ refuses backs off and is parked as failed after its attempts; the rows
around it are published once each; an unreachable broker counts nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from structlog.testing import capture_logs

from shared.broker import Broker
from shared.events import CloudEvent
from shared.metrics import OUTBOX_FAILED_ROWS
from shared.outbox import OutboxRelay, OutboxRetry, enqueue
from shared.outbox_failed import count_failed, list_rows, retry_failed
from shared.supervisor import Supervisor
from shared.topology import Topology
from tests.conftest import AMQP_URL, TEST_JOBS_QUEUE, eventually
from tests.helpers import TcpProxy, get_messages, queue_depth

GOOD_KEY = "job.tests.outbox"  # bound to tests.jobs
BAD_KEY = "nowhere.bound"  # bound to nothing: unroutable


def event(n: int, key: str = GOOD_KEY) -> CloudEvent:
    return CloudEvent.create(type=key, data=b'{"n": %d}' % n, source="urn:test", id=f"ev-{n}")


async def write(db, *events: tuple[CloudEvent, str]) -> None:
    async with db.acquire() as conn, conn.transaction():
        for e, key in events:
            await enqueue(conn, e, key)


@pytest.fixture
async def broker(namespace: str) -> AsyncIterator[Broker]:
    broker = Broker(AMQP_URL, Topology(namespace), [TEST_JOBS_QUEUE], name="test-relay")
    await broker.start()
    await broker.wait_ready()
    yield broker
    await broker.close()


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    supervisor = Supervisor(min_backoff_s=0.05, max_backoff_s=0.2)
    yield supervisor
    await supervisor.stop()


async def row(db, event_id: str) -> dict[str, Any]:
    return dict(await db.fetchrow("SELECT * FROM outbox WHERE event_id = $1", event_id))


async def test_one_unroutable_row_neither_doubles_nor_blocks_the_others(
    db, broker, supervisor, namespace
) -> None:
    queue = f"{namespace}{TEST_JOBS_QUEUE.name}"
    await write(db, (event(1), GOOD_KEY), (event(2, BAD_KEY), BAD_KEY), (event(3), GOOD_KEY))
    retry = OutboxRetry(max_attempts=3, min_delay_s=0.2, max_delay_s=0.4)
    relay = OutboxRelay(db, broker, poll_s=0.01, retry=retry)
    with capture_logs() as logs:
        supervisor.spawn("outbox-relay", relay.run)
        bad = await eventually(
            lambda: db.fetchrow("SELECT * FROM outbox WHERE failed_at IS NOT NULL"), timeout_s=15
        )
        await asyncio.sleep(0.5)  # parked: no further attempt

    # Each good row published exactly once, whatever happened to the bad one.
    messages = await get_messages(queue)
    assert sorted(m.message_id for m in messages) == ["ev-1", "ev-3"]
    for good in ("ev-1", "ev-3"):
        r = await row(db, good)
        assert r["published_at"] is not None and r["attempts"] == 1
    # The bad row: 3 attempts, spaced by the backoff, then parked with the reason.
    assert bad["event_id"] == "ev-2" and bad["published_at"] is None
    assert bad["attempts"] == 3
    assert "unroutable" in bad["last_error"] and BAD_KEY in bad["last_error"]
    # No hot loop: 2 good publishes + 3 of the bad row, in all.
    assert relay.publish_attempts == 5
    # 0.2 s (at least half of it) + 0.4 s (at least half) between the three attempts.
    assert (bad["failed_at"] - bad["created_at"]).total_seconds() >= 0.3
    refused = [e for e in logs if e["event"] == "outbox.publish_refused"]
    parked = [e for e in logs if e["event"] == "outbox.rows_failed"]
    assert len(refused) == 2 and refused[0]["event_ids"] == ["ev-2"]
    assert len(parked) == 1 and parked[0]["log_level"] == "error"

    # Visible: listed, counted, in the gauge.
    assert [r.event_id for r in await list_rows(db, "failed")] == ["ev-2"]
    assert await count_failed(db) == 1
    await relay.refresh_failed_gauge()
    assert OUTBOX_FAILED_ROWS._value.get() == 1

    # Retryable: once a queue takes its routing key, a retry publishes it once.
    await bind(namespace, queue, BAD_KEY)
    assert await retry_failed(db) == [bad["id"]]
    assert await retry_failed(db) == []  # nothing parked any more
    await eventually(lambda: queue_depth(queue), timeout_s=10)
    [message] = await get_messages(queue)
    assert message.message_id == "ev-2"
    published = await row(db, "ev-2")
    assert published["published_at"] is not None and published["failed_at"] is None
    assert relay.publish_attempts == 6


async def bind(namespace: str, queue: str, routing_key: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue)
        await q.bind(f"{namespace}crmsync.events", routing_key=routing_key)
    finally:
        await connection.close()


async def test_a_broker_outage_counts_no_attempt_and_logs_once(db, namespace, supervisor) -> None:
    proxy = TcpProxy()
    await proxy.start()
    broker = Broker(proxy.url, Topology(namespace), [TEST_JOBS_QUEUE], reconnect_interval_s=0.2)
    await broker.start(supervisor)
    await broker.wait_ready()
    relay = OutboxRelay(db, broker, poll_s=0.01, retry=OutboxRetry(max_attempts=2))
    with capture_logs() as logs:
        supervisor.spawn("outbox-relay", relay.run)
        await proxy.cut()
        await eventually(lambda: asyncio.sleep(0, not broker.ready))
        await write(db, *((event(n), GOOD_KEY) for n in range(10)))
        await asyncio.sleep(1.0)  # ~100 polls with rows due and the broker away
        pending = await db.fetch("SELECT attempts, failed_at FROM outbox")
        assert [(r["attempts"], r["failed_at"]) for r in pending] == [(0, None)] * 10
        await proxy.start()  # same port: RabbitMQ is back
        await eventually(
            lambda: db.fetchval("SELECT count(*) = 10 FROM outbox WHERE published_at IS NOT NULL"),
            timeout_s=20,
        )
    messages = await get_messages(f"{namespace}{TEST_JOBS_QUEUE.name}")
    assert sorted(m.message_id for m in messages) == sorted(f"ev-{n}" for n in range(10))
    relay_lines = [e for e in logs if e["event"].startswith("outbox.")]
    assert [e["event"] for e in relay_lines] == ["outbox.publish_failing", "outbox.recovered"]
    assert relay_lines[1]["failures"] > 10
    await proxy.cut()
    await broker.close()


async def test_the_idle_poll_is_one_index_only_probe(db) -> None:
    # Many published rows, some parked: the probe reads none of them.
    await db.execute(
        """
        INSERT INTO outbox (event_id, routing_key, headers, body, published_at, failed_at)
        SELECT 'p-' || i, 'k', '{}', '', CASE WHEN i % 10 > 0 THEN now() END,
               CASE WHEN i % 10 = 0 THEN now() END
        FROM generate_series(1, 5000) AS i
        """
    )
    await db.execute("VACUUM ANALYZE outbox")
    from shared.outbox_relay import _DUE

    plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN (ANALYZE, BUFFERS) " + _DUE))
    assert "Index Only Scan using outbox_due" in plan, plan
    assert "Heap Fetches: 0" in plan, plan

    # With a backlog too (a third of the table due): still the index, never a scan.
    await db.execute(
        """
        INSERT INTO outbox (event_id, routing_key, headers, body)
        SELECT 'd-' || i, 'k', '{}', '' FROM generate_series(1, 2500) AS i
        """
    )
    await db.execute("VACUUM ANALYZE outbox")
    plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN (ANALYZE, BUFFERS) " + _DUE))
    assert "Index Only Scan using outbox_due" in plan and "Seq Scan" not in plan, plan
