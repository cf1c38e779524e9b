"""The consumer wrapper against the real RabbitMQ (and Postgres where a pool is involved):
retry logs, deadlines, permanent errors, dead-letter hooks, pool timeouts and shares."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from shared.broker import Broker
from shared.consumer import Consumer, Delivery
from shared.db import DatabaseBusyError, create_pool
from shared.errors import PermanentError, TransientError
from shared.events import CloudEvent
from shared.topology import QueueSpec, Topology
from tests.conftest import AMQP_URL, eventually
from tests.helpers import get_messages, queue_depth

SPEC = QueueSpec("tests.consumer", ("tests.consumer.#",), retry_delays_s=(0.05, 0.1, 0.2))
EVENT_TYPE = "tests.consumer.thing"

Handler = Callable[[CloudEvent, Delivery], Awaitable[None]]


@pytest.fixture
async def make_consumer(namespace: str) -> AsyncIterator[Callable[..., Awaitable[Consumer]]]:
    """``await make_consumer(handler, max_attempts=3, **kwargs)`` → a started Consumer on
    the test's own queue (deleted afterwards with its dead and retry queues)."""
    topology = Topology(namespace)
    broker = Broker(AMQP_URL, topology, [SPEC], name="test-consumer")
    await broker.start()
    await broker.wait_ready(10)
    consumers: list[Consumer] = []

    async def make(handler: Handler, max_attempts: int = 3, **kwargs: Any) -> Consumer:
        consumer = Consumer(broker, SPEC, handler, max_attempts=max_attempts, **kwargs)
        await consumer.start()
        consumers.append(consumer)
        return consumer

    yield make
    for consumer in consumers:
        await consumer.stop(2)
    await broker.close()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for name in (
            topology.queue(SPEC),
            topology.dead_queue(SPEC),
            *(topology.retry_queue(d) for d in SPEC.retry_delays_s),
        ):
            await channel.queue_delete(name)
        for delay in SPEC.retry_delays_s:
            await channel.exchange_delete(topology.retry_queue(delay))
    finally:
        await connection.close()


async def publish(consumer: Consumer, n: int = 0) -> CloudEvent:
    event = CloudEvent.create(
        type=EVENT_TYPE, source="urn:test", data=json.dumps({"n": n}).encode()
    )
    await consumer.broker.publish(event)
    return event


def entries(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def dead_letters(consumer: Consumer) -> list[aio_pika.abc.AbstractIncomingMessage]:
    return await get_messages(consumer.broker.topology.dead_queue(SPEC))


async def test_a_transient_failure_is_one_line_per_attempt_without_a_traceback(
    make_consumer,
) -> None:
    attempts: list[int] = []
    errors = [ConnectionRefusedError(111, "Connect call failed"), TransientError("db away")]

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if errors:
            raise errors.pop(0)

    with capture_logs() as logs:
        consumer = await make_consumer(handler, max_attempts=5)
        await publish(consumer)
        await eventually(lambda: _true(attempts == [1, 2, 3]))
        await asyncio.sleep(0.2)
    retries = entries(logs, "handler.retrying")
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r.get("exc_info") is None for r in retries)
    assert "ConnectionRefusedError" in retries[0]["error"]
    assert entries(logs, "handler.failed") == []


async def test_the_final_failure_logs_a_traceback_once_per_exception_class(make_consumer) -> None:
    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        raise OSError("Postgres is down")

    with capture_logs() as logs:
        consumer = await make_consumer(handler, max_attempts=2)
        await publish(consumer, 1)
        await publish(consumer, 2)
        await eventually(lambda: dead_depth(consumer, 2), timeout_s=10)
    retries = entries(logs, "handler.retrying")
    finals = entries(logs, "handler.failed")
    assert len(retries) == 2 and all(r.get("exc_info") is None for r in retries)
    assert len(finals) == 2
    # The first final failure carries the traceback; the second, of the same class, not.
    assert [isinstance(f.get("exc_info"), OSError) for f in finals] == [True, False]


async def test_an_unexpected_exception_class_logs_its_traceback_once(make_consumer) -> None:
    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        raise KeyError("a bug")

    with capture_logs() as logs:
        consumer = await make_consumer(handler, max_attempts=3)
        await publish(consumer)
        await eventually(lambda: dead_depth(consumer, 1), timeout_s=10)
    logged = entries(logs, "handler.retrying") + entries(logs, "handler.failed")
    assert len(logged) == 3
    assert sum(1 for e in logged if e.get("exc_info") is not None) == 1


async def test_a_handler_past_its_deadline_is_cancelled_and_retried(make_consumer) -> None:
    attempts: list[int] = []
    finished: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            await asyncio.sleep(5)  # far past the deadline
        finished.append(delivery.attempt)

    with capture_logs() as logs:
        consumer = await make_consumer(handler, max_attempts=3, deadline_s=0.3)
        await publish(consumer)
        await eventually(lambda: _true(finished == [2]), timeout_s=5)
    assert attempts == [1, 2]
    (retry,) = entries(logs, "handler.retrying")
    assert "HandlerDeadlineError" in retry["error"] and "0.3 s deadline" in retry["error"]
    assert retry.get("exc_info") is None
    assert await dead_letters(consumer) == []


class Thing(BaseModel):
    n: int
    name: str


async def test_a_validation_error_is_dead_lettered_at_once(make_consumer) -> None:
    attempts: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        Thing.model_validate_json(event.data)  # no "name": a ValidationError

    consumer = await make_consumer(handler, max_attempts=5)
    await publish(consumer)
    (dead,) = await eventually(lambda: dead_letters(consumer), timeout_s=5)
    assert attempts == [1]
    assert dead.headers["x-crmsync-attempt"] == 1
    assert "name: Field required" in str(dead.headers["x-crmsync-error"])


async def test_a_failing_dead_letter_hook_keeps_the_message_until_it_records(
    make_consumer,
) -> None:
    recorded: list[str] = []
    hook_calls: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        raise PermanentError("never valid")

    async def on_dead_letter(event: CloudEvent, delivery: Delivery, error: str) -> None:
        hook_calls.append(delivery.attempt)
        if len(hook_calls) == 1:
            raise OSError("database down")
        recorded.append(error)

    consumer = await make_consumer(handler, max_attempts=3, on_dead_letter=on_dead_letter)
    await publish(consumer)
    (dead,) = await eventually(lambda: dead_letters(consumer), timeout_s=5)
    assert recorded == ["never valid"]
    # The retry after the hook failed came back at the same attempt.
    assert hook_calls == [1, 1]
    assert dead.headers["x-crmsync-attempt"] == 1


async def test_a_pool_acquire_timeout_is_retried_not_hung(make_consumer, database) -> None:
    pool = await create_pool(database, min_size=1, max_size=1, acquire_timeout_s=0.2)
    held = await pool.acquire()
    answers: list[int] = []
    try:

        async def handler(event: CloudEvent, delivery: Delivery) -> None:
            answers.append(await pool.fetchval("SELECT $1::int", delivery.attempt))

        with capture_logs() as logs:
            consumer = await make_consumer(handler, max_attempts=10)
            await publish(consumer)
            await eventually(lambda: _true(entries(logs, "handler.retrying")), timeout_s=5)
            await pool.release(held)
            held = None
            await eventually(lambda: _true(answers), timeout_s=5)
        first = entries(logs, "handler.retrying")[0]
        assert DatabaseBusyError.__name__ in first["error"] and first.get("exc_info") is None
        assert answers[0] >= 2
    finally:
        if held is not None:
            await pool.release(held)
        await pool.close()


async def test_one_queue_holds_at_most_its_share_of_the_pool(make_consumer, database) -> None:
    pool = await create_pool(database, min_size=1, max_size=4, acquire_timeout_s=5)
    holding = 0
    most = 0
    done: list[int] = []
    try:

        async def handler(event: CloudEvent, delivery: Delivery) -> None:
            nonlocal holding, most
            async with pool.acquire() as conn:
                holding += 1
                most = max(most, holding)
                await conn.execute("SELECT pg_sleep(0.2)")
                holding -= 1
            done.append(1)

        consumer = await make_consumer(handler, prefetch_count=10, db_connections=2)
        for n in range(10):
            await publish(consumer, n)
        await eventually(lambda: _true(holding == 2), timeout_s=5)
        # Meanwhile work outside the queue still gets a connection at once.
        assert await asyncio.wait_for(pool.fetchval("SELECT 1"), 0.5) == 1
        await eventually(lambda: _true(len(done) == 10), timeout_s=10)
        assert most == 2
    finally:
        await pool.close()


async def _true(value: object) -> bool:
    return bool(value)


async def dead_depth(consumer: Consumer, n: int) -> bool:
    return await queue_depth(consumer.broker.topology.dead_queue(SPEC)) >= n


async def test_acks_share_frames_and_never_cover_a_message_still_handled(make_consumer) -> None:
    """Finished handlers' acks go out together (``basic.ack multiple``), and a message
    whose handler has not finished is not covered: after the channel goes, exactly the
    unfinished ones come back."""
    release = asyncio.Event()
    finished: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        n = json.loads(event.data)["n"]
        if n in (83, 93):  # these never finish while the test looks
            await release.wait()
        await asyncio.sleep(0.01)
        finished.append(n)

    consumer = await make_consumer(handler, prefetch_count=32)
    await asyncio.gather(*(publish(consumer, n) for n in range(100)))
    await eventually(lambda: _true(len(finished) == 98), timeout_s=20)
    await asyncio.sleep(0.3)  # the last acks are on the wire
    acks = consumer._acks
    assert acks is not None and acks.frames < 60, acks.frames  # shared frames
    assert consumer._channel is not None
    await consumer._channel.close()  # as if the process died: unacked ones go back
    back = await get_messages(consumer.broker.topology.queue(SPEC))
    assert sorted(json.loads(m.body)["n"] for m in back) == [83, 93]
    release.set()
