"""Fixtures: a fresh database and a RabbitMQ namespace per test, real services in-process.

- ``database``: ``CREATE DATABASE ... TEMPLATE`` from a template migrated once per
  migration set, dropped after the test (``WITH (FORCE)``).
- ``namespace``: a unique prefix for every exchange and queue the test declares;
  they are deleted after the test. Connection names carry the test id, so the
  management console shows which test left something behind.
- ``sandbox``, ``intake``, ``start_syncer``: the real apps on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
from aiohttp import web

from shared.migrate import DEFAULT_DIR, migrate

PG_ADMIN = os.environ.get("CRMSYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("CRMSYNC_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _dsn(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def _template() -> str:
    digest = hashlib.sha256()
    for path in sorted(DEFAULT_DIR.glob("*.sql")):
        digest.update(path.name.encode() + path.read_bytes())
    name = f"crmsync_tpl_{digest.hexdigest()[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute("SELECT pg_advisory_lock(4242)")
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            building = name + "_building"
            await admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{building}"')
            await migrate(_dsn(building))
            await admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        await admin.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        await admin.close()
    return name


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """DSN of a new, migrated database of this test's own."""
    template = await _template()
    name = f"crmsync_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        for attempt in range(20):
            try:
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.1 * (attempt + 1))
        yield _dsn(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's database, for assertions."""
    from shared.db import create_pool

    pool = await create_pool(database, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def namespace(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A unique exchange/queue name prefix; everything under it is deleted afterwards."""
    ns = f"t{uuid.uuid4().hex[:10]}."
    yield ns
    await delete_namespace(ns, request.node.nodeid)


async def delete_namespace(ns: str, label: str = "cleanup") -> None:
    """Delete every queue and exchange whose name starts with ``ns``.

    RabbitMQ has no listing over AMQP, so we delete the names crmsync can create.
    """
    from services.syncer.main import consumer_plan
    from shared.settings import SyncerSettings
    from shared.topology import Topology

    topology = Topology(ns)
    connection = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": label})
    try:
        channel = await connection.channel()
        settings_variants = [
            SyncerSettings(
                _env_file=None, retry_unit_s=unit, action_max_attempts=n, handler_max_attempts=n
            )
            for unit in (0.05, 0.1, 0.2, 1.0, 60.0)
            for n in (2, 3, 5)
        ]
        names: set[str] = set()
        for settings in settings_variants:
            for spec, _, _ in consumer_plan(settings):
                names |= {topology.queue(spec), topology.dead_queue(spec)}
                names |= {topology.retry_queue(spec, d) for d in spec.retry_delays_s}
        from shared.queues import ALL

        for spec in ALL:
            names |= {topology.queue(spec), topology.dead_queue(spec)}
        for name in names:
            await channel.queue_delete(name)
        for exchange in (topology.events_exchange, topology.dead_exchange):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    """Base URL of a fresh CRM sandbox (``http://127.0.0.1:PORT``)."""
    from services.sandbox.app import create_app
    from shared.settings import ProviderSettings

    runner = web.AppRunner(create_app(ProviderSettings(_env_file=None)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


SHOPIFY_SECRET = "test-shopify-secret"


def syncer_settings(database: str, namespace: str, sandbox: str, **overrides: Any) -> Any:
    from shared.settings import SyncerSettings

    values: dict[str, Any] = {
        "database_url": database,
        "amqp_url": AMQP_URL,
        "amqp_namespace": namespace,
        "shopify_base_url": f"{sandbox}/shopify",
        "commerce7_base_url": f"{sandbox}/commerce7/v1",
        "shopify_rate_per_s": 50,
        "commerce7_rate_per_s": 50,
        "retry_unit_s": 0.1,
        "outbox_poll_s": 0.2,
        "shutdown_grace_s": 2,
        "db_pool_max_size": 5,
    }
    values.update(overrides)
    return SyncerSettings(_env_file=None, **values)


def intake_settings(namespace: str, **overrides: Any) -> Any:
    from shared.settings import IntakeSettings

    values: dict[str, Any] = {
        "amqp_url": AMQP_URL,
        "amqp_namespace": namespace,
        "shopify_webhook_secret": SHOPIFY_SECRET,
        "commerce7_tenants": ["testing"],
    }
    values.update(overrides)
    return IntakeSettings(_env_file=None, **values)


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def make_intake(namespace: str) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await make_intake(settings)`` → base URL of a running intake (broker ready)."""
    from services.intake.app import create_app
    from services.intake.keys import broker_key

    runners: list[web.AppRunner] = []

    async def make(settings: Any, wait_ready: bool = True) -> str:
        app = create_app(settings)
        runner, url = await start_app(app)
        runners.append(runner)
        if wait_ready:
            await app[broker_key].wait_ready(10)
        return url

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def intake(make_intake: Callable[..., Awaitable[str]], namespace: str) -> str:
    return await make_intake(intake_settings(namespace))


@pytest.fixture
async def make_syncer(
    database: str, namespace: str, sandbox: str
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await make_syncer(settings)`` → a started in-process :class:`Syncer`.

    Depends on the database, namespace and sandbox so that it stops before they go.
    """
    from services.syncer.main import Syncer

    started: list[Syncer] = []

    async def make(settings: Any) -> Syncer:
        syncer = Syncer(settings)
        await syncer.start()
        started.append(syncer)
        return syncer

    yield make
    for syncer in started:
        await syncer.stop()


@pytest.fixture
async def syncer(
    make_syncer: Callable[..., Awaitable[Any]], database: str, namespace: str, sandbox: str
) -> Any:
    return await make_syncer(syncer_settings(database, namespace, sandbox))


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, timeout_s: float = 10.0, interval_s: float = 0.05
) -> Any:
    """Poll ``probe`` until it returns something truthy; its last value otherwise fails."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        await asyncio.sleep(interval_s)
