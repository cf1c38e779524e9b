"""The syncer's background tasks are supervised: a broken relay, a topology mismatch,
Postgres or RabbitMQ away at start or for a while, all show in ``/readyz`` and heal
without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from services.syncer.main import Syncer, health_app
from shared.db import create_pool
from shared.events import CloudEvent
from shared.migrate import migrate
from shared.outbox import enqueue
from shared.topology import Topology
from tests.conftest import (
    AMQP_URL,
    TEST_JOBS_QUEUE,
    eventually,
    start_app,
    syncer_settings,
)
from tests.helpers import TcpProxy, get_messages, queue_depth
from tests.pgcluster import PgCluster

# Short backoffs, so that the tests see restarts and recoveries within seconds.
FAST = {
    "supervisor_backoff_min_s": 0.05,
    "supervisor_backoff_max_s": 0.5,
    "broker_reconnect_interval_s": 0.2,
    "db_probe_interval_s": 0.2,
}


@pytest.fixture
async def run_syncer(
    database: str, namespace: str, sandbox: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[Syncer, str]]]]:
    """``await run_syncer(**settings)`` → (a syncer started without waiting, its health URL)."""
    started: list[tuple[Syncer, web.AppRunner]] = []

    async def run(**overrides: Any) -> tuple[Syncer, str]:
        syncer = Syncer(syncer_settings(database, namespace, sandbox, **{**FAST, **overrides}))
        runner, url = await start_app(health_app(syncer))
        started.append((syncer, runner))
        await syncer.start(wait=False)
        return syncer, url

    yield run
    for syncer, runner in started:
        await syncer.stop()
        await runner.cleanup()


async def readyz(http, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{url}/readyz") as resp:
        return resp.status, await resp.json(content_type=None)


async def ready(http, url: str) -> bool:
    return (await readyz(http, url))[0] == 200


async def component(http, url: str, name: str, state: str) -> dict[str, Any] | None:
    """``/readyz``'s body when it is 503 and ``name`` is in ``state``, else None."""
    status, body = await readyz(http, url)
    if status == 503 and body["components"].get(name, {}).get("state") == state:
        return body
    return None


async def declare_test_queue(namespace: str) -> str:
    """tests.jobs (routing key job.#): a queue no syncer consumer drains."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        await Topology(namespace).declare(await connection.channel(), [TEST_JOBS_QUEUE])
    finally:
        await connection.close()
    return f"{namespace}{TEST_JOBS_QUEUE.name}"


async def write_event(pool: asyncpg.Pool, n: int) -> None:
    event = CloudEvent.create(type="job.tests.relay", data=b"{}", source="urn:test", id=f"r-{n}")
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, event)


async def test_a_relay_whose_database_connection_breaks_is_restarted_and_keeps_publishing(
    http, run_syncer, db, namespace
) -> None:
    queue = await declare_test_queue(namespace)
    syncer, url = await run_syncer()
    await eventually(lambda: ready(http, url), timeout_s=30)
    relay = syncer._relay
    assert relay is not None

    # What asyncpg raised in a relay after a Postgres restart, on every round for now.
    real_drain = relay.drain
    broken = True

    async def drain() -> Any:
        if broken:
            raise asyncpg.InternalClientError("cannot switch to state 15")
        return await real_drain()

    relay.drain = drain  # type: ignore[method-assign]
    body = await eventually(lambda: component(http, url, "outbox-relay", "restarting"))
    relay_state = body["components"]["outbox-relay"]
    assert "InternalClientError" in relay_state["last_error"]
    assert relay_state["restarts"] >= 1
    assert "outbox-relay restarting" in body["detail"]
    broken = False
    await eventually(lambda: ready(http, url), timeout_s=15)
    await write_event(db, 1)
    await eventually(lambda: queue_depth(queue), timeout_s=10)

    # Its connection killed under it mid-query (pg_terminate_backend while it waits on
    # a lock we hold): restarted, and publishing again.
    restarts = syncer.supervisor["outbox-relay"].restarts
    async with db.acquire() as locker, locker.transaction():
        await locker.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        waiting = "application_name = 'crmsync-syncer' AND wait_event_type = 'Lock'"
        await eventually(
            lambda: db.fetchval(f"SELECT count(*) > 0 FROM pg_stat_activity WHERE {waiting}")
        )
        await db.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {waiting}")
        await eventually(
            lambda: asyncio.sleep(0, syncer.supervisor["outbox-relay"].restarts > restarts)
        )
    assert "57P01" in syncer.supervisor["outbox-relay"].last_error or "terminat" in (
        syncer.supervisor["outbox-relay"].last_error or ""
    )
    await write_event(db, 2)
    await eventually(lambda: ready(http, url), timeout_s=15)
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 2 FROM outbox WHERE published_at IS NOT NULL"),
        timeout_s=15,
    )
    assert sorted(m.message_id for m in await get_messages(queue)) == ["r-1", "r-2"]


async def test_a_topology_mismatch_names_the_queue_and_argument_and_is_retried(
    http, run_syncer, namespace
) -> None:
    orders = f"{namespace}syncer.orders"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    # As crmsync declares it, but for the delivery limit (an older release's, say).
    arguments = {
        **Topology(namespace).work_queue_arguments("syncer.orders"),
        "x-delivery-limit": 10,
    }
    await channel.declare_queue(orders, durable=True, arguments=arguments)
    with capture_logs() as logs:
        syncer, url = await run_syncer()
        expected = f"queue {orders} exists with x-delivery-limit=10, crmsync declares 20"
        body = await eventually(lambda: component(http, url, "broker", "restarting"))
        assert expected in body["components"]["broker"]["last_error"]
        assert expected in body["detail"]
        await asyncio.sleep(1.5)  # several more attempts
        assert syncer.supervisor["broker"].restarts >= 3
        status, body = await readyz(http, url)
        assert status == 503 and body["ready"] is False
    failed = [e for e in logs if e.get("task") == "broker" and e["event"] == "task.failed"]
    assert len(failed) == 1, failed  # once, not once per attempt
    assert failed[0]["log_level"] == "error" and expected in failed[0]["error"]

    # Fixed by an operator (the queue deleted): ready without a restart.
    await channel.queue_delete(orders)
    await connection.close()
    await eventually(lambda: ready(http, url), timeout_s=15)
    await asyncio.wait_for(syncer.wait_consuming(), 10)


async def test_a_syncer_started_while_rabbitmq_is_down_waits_and_resumes_after_reconnects(
    http, run_syncer, intake_with_key, db
) -> None:
    intake, key = intake_with_key
    proxy = TcpProxy()
    await proxy.start()
    port = proxy.port
    await proxy.cut()
    syncer, url = await run_syncer(amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/")
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
    await eventually(lambda: component(http, url, "broker", "restarting"))
    proxy.port = port
    await proxy.start()
    await eventually(lambda: ready(http, url), timeout_s=20)
    await asyncio.wait_for(syncer.wait_consuming(), 10)
    assert await post_credits(http, intake, key, version=1) == 202
    await eventually(lambda: balance(db, 1), timeout_s=10)

    # The link drops and comes back: the robust connection restores the consumers.
    for version in (2, 3):
        await proxy.cut()
        body = await eventually(lambda: component(http, url, "broker", "restarting"))
        assert "connection lost" in body["components"]["broker"]["last_error"]
        await proxy.start()
        await eventually(lambda: ready(http, url), timeout_s=20)
        assert await post_credits(http, intake, key, version=version) == 202
        await eventually(lambda version=version: balance(db, version), timeout_s=10)
    await proxy.cut()


@pytest.fixture
async def intake_with_key(make_intake, namespace) -> tuple[str, str]:
    from tests.conftest import intake_settings

    key = "test-booking-api-key"
    url = await make_intake(intake_settings(namespace, api_keys={"booking-api": key}))
    return url, key


async def post_credits(http, intake: str, key: str, *, version: int) -> int:
    body = {
        "idempotencyKey": f"deduct-{version}",
        "reason": "booking_created",
        "occurredAt": "2026-11-21T10:00:00Z",
        "contact": {"studentId": "st-17", "email": "ada@example.test"},
        "credits": {"sj_credits": version},
        "version": version,
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{intake}/v1/events/credits", json=body, headers=headers) as resp:
        return resp.status


async def balance(db, expected: int) -> bool:
    return await db.fetchval("SELECT balance FROM contact_credits") == expected


@pytest.fixture
async def cluster() -> AsyncIterator[PgCluster]:
    cluster = PgCluster()
    await cluster.init()
    yield cluster
    await cluster.cleanup()


async def test_a_syncer_started_while_postgres_is_down_waits_for_it(
    http, run_syncer, cluster
) -> None:
    syncer, url = await run_syncer(database_url=cluster.dsn())
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
    body = await eventually(lambda: component(http, url, "postgres", "restarting"))
    assert body["components"]["postgres"]["last_error"]
    assert body["components"]["consumers"]["state"] == "starting"
    await asyncio.sleep(1.0)  # still waiting, not exited
    assert not syncer.postgres.opened
    await cluster.start()
    await migrate(cluster.dsn())
    await eventually(lambda: ready(http, url), timeout_s=30)
    await asyncio.wait_for(syncer.wait_consuming(), 10)
    assert len(syncer.consumers) == len(syncer.plan)
    assert syncer.supervisor["postgres"].restarts >= 1


async def test_postgres_down_for_seconds_gives_a_few_relay_lines_not_a_flood(
    http, run_syncer, cluster, namespace
) -> None:
    queue = await declare_test_queue(namespace)
    await cluster.start()
    await migrate(cluster.dsn())
    syncer, url = await run_syncer(database_url=cluster.dsn())
    await eventually(lambda: ready(http, url), timeout_s=30)
    pool = await create_pool(cluster.dsn(), min_size=1, max_size=2)
    with capture_logs() as logs:
        await cluster.stop()
        await eventually(lambda: component(http, url, "outbox-relay", "restarting"))
        await asyncio.sleep(4.0)
        await cluster.start()
        await eventually(lambda: ready(http, url), timeout_s=30)
        await write_event(pool, 1)
        await eventually(lambda: queue_depth(queue), timeout_s=15)
        await asyncio.sleep(syncer.supervisor.stable_s + 0.5)  # the recovery lines
    await pool.close()
    relay = [
        e for e in logs
        if (e.get("task") == "outbox-relay" or e["event"].startswith("outbox."))
        and e["log_level"] != "debug"
    ]  # fmt: skip
    # Before: 20 warnings a second (80 here). Now: one line per kind of failure
    # (refused, then the connection reset ...) and one recovery.
    assert 2 <= len(relay) <= 6, relay
    assert relay[0]["event"] == "task.failed" and relay[-1]["event"] == "task.recovered"
    assert all("exc_info" not in e for e in relay)
    assert syncer.supervisor["outbox-relay"].restarts >= 3


async def test_a_topology_mismatch_found_on_reconnect_shows_and_heals(
    http, run_syncer, intake_with_key, namespace, db
) -> None:
    intake, key = intake_with_key
    proxy = TcpProxy()
    await proxy.start()
    syncer, url = await run_syncer(amqp_url=proxy.url)
    await eventually(lambda: ready(http, url), timeout_s=20)
    await asyncio.wait_for(syncer.wait_consuming(), 10)
    await proxy.cut()
    # While the syncer is away, someone re-creates its queue with another limit.
    credits = f"{namespace}syncer.credits"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.queue_delete(credits)
    arguments = {
        **Topology(namespace).work_queue_arguments("syncer.credits"),
        "x-delivery-limit": 7,
    }
    await channel.declare_queue(credits, durable=True, arguments=arguments)
    with capture_logs() as logs:
        await proxy.start()
        expected = f"queue {credits} exists with x-delivery-limit=7, crmsync declares 20"

        async def mismatch() -> dict[str, Any] | None:
            body = await component(http, url, "broker", "restarting")
            error = body["components"]["broker"]["last_error"] if body else ""
            return body if expected in error else None

        await eventually(mismatch, timeout_s=20)
        await asyncio.sleep(1.0)  # the robust connection keeps trying
        assert not await ready(http, url)
    lines = [e for e in logs if e.get("task") == "broker" and e["event"] == "task.failed"]
    assert len([e for e in lines if expected in e["error"]]) == 1, lines

    await channel.queue_delete(credits)  # fixed: the next attempt declares it afresh
    await connection.close()
    await eventually(lambda: ready(http, url), timeout_s=20)
    assert await post_credits(http, intake, key, version=4) == 202
    await eventually(lambda: balance(db, 4), timeout_s=10)
    await proxy.cut()


async def test_a_graceful_stop_logs_no_failure(run_syncer) -> None:
    syncer, _ = await run_syncer()

    async def ready() -> bool:
        return syncer.supervisor.ready

    await eventually(ready, timeout_s=15)
    with capture_logs() as logs:
        await syncer.stop()
    failures = [e for e in logs if e["log_level"] in ("error", "warning")]
    assert failures == []
    assert logs[-1]["event"] == "syncer.stopped"
