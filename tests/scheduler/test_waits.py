"""A scheduler started while Postgres or RabbitMQ is down waits for them, not ready,
and starts ticking once they answer, without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.scheduler.keys import scheduler_key
from services.scheduler.main import create_app
from shared.migrate import migrate
from tests.conftest import ADMIN_TOKEN, eventually, scheduler_settings, start_app
from tests.helpers import TcpProxy
from tests.pgcluster import PgCluster

FAST = {
    "supervisor_backoff_min_s": 0.05,
    "supervisor_backoff_max_s": 0.5,
    "broker_reconnect_interval_s": 0.2,
    "db_probe_interval_s": 0.2,
}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def cluster() -> AsyncIterator[PgCluster]:
    cluster = PgCluster()
    await cluster.init()
    yield cluster
    await cluster.cleanup()


@pytest.fixture
async def serve_scheduler(database: str, namespace: str) -> AsyncIterator[Any]:
    """``await serve_scheduler(settings)`` → (URL, app), served without waiting (and
    stopped before the test database goes)."""
    from aiohttp import web

    runners: list[web.AppRunner] = []

    async def serve(settings: Any) -> tuple[str, web.Application]:
        app = create_app(settings)
        runner, url = await start_app(app)
        runners.append(runner)
        return url, app

    yield serve
    for runner in runners:
        await runner.cleanup()


async def readyz(http, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{url}/readyz") as resp:
        return resp.status, await resp.json(content_type=None)


async def not_ready_because(http, url: str, name: str) -> dict[str, Any] | None:
    status, body = await readyz(http, url)
    if status == 503 and body["components"][name]["state"] == "restarting":
        return body
    return None


async def ready(http, url: str) -> bool:
    return (await readyz(http, url))[0] == 200


async def test_a_scheduler_started_while_postgres_is_down_waits_and_then_ticks(
    http, serve_scheduler, cluster, namespace
) -> None:
    url, app = await serve_scheduler(
        scheduler_settings(cluster.dsn(), namespace, **FAST, tick_poll_s=0.2)
    )
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
    body = await eventually(lambda: not_ready_because(http, url, "postgres"))
    assert body["ready"] is False and "postgres restarting" in body["detail"]
    assert body["components"]["ticks"]["state"] == "starting"
    # The admin API says so too, instead of a 500.
    async with http.get(f"{url}/v1/jobs", headers=AUTH) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert resp.content_type == "application/problem+json"
    await asyncio.sleep(1.0)  # still there, still waiting

    await cluster.start()
    await migrate(cluster.dsn())
    await eventually(lambda: ready(http, url), timeout_s=30)
    scheduler = app[scheduler_key]
    await asyncio.wait_for(scheduler.wait_started(), 5)
    await eventually(lambda: asyncio.sleep(0, scheduler.checked_at is not None))
    rows = await scheduler.pool.fetchval("SELECT count(*) FROM scheduler_jobs")
    assert rows == len(scheduler.jobs)
    async with http.get(f"{url}/v1/jobs", headers=AUTH) as resp:
        assert resp.status == 200


async def test_a_scheduler_started_while_rabbitmq_is_down_waits_for_it(
    http, serve_scheduler, database, namespace
) -> None:
    proxy = TcpProxy()
    await proxy.start()
    port = proxy.port
    await proxy.cut()
    amqp_url = f"amqp://guest:guest@127.0.0.1:{port}/"
    url, _app = await serve_scheduler(
        scheduler_settings(database, namespace, **FAST, amqp_url=amqp_url)
    )

    async def waiting_for_the_broker_only() -> dict[str, Any] | None:
        body = await not_ready_because(http, url, "broker")
        return body if body and body["components"]["ticks"]["state"] == "running" else None

    body = await eventually(waiting_for_the_broker_only)
    assert "ConnectionError" in body["components"]["broker"]["last_error"]
    assert body["components"]["postgres"]["state"] == "running"
    proxy.port = port
    await proxy.start()
    await eventually(lambda: ready(http, url), timeout_s=20)
    await proxy.cut()
