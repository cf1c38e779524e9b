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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
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
from shared.topology import QueueSpec

PG_ADMIN = os.environ.get("CRMSYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("CRMSYNC_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
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
    ns = f"t{_run_id()}{uuid.uuid4().hex[:6]}."
    yield ns
    await delete_namespace(ns, request.node.nodeid)


def pytest_configure(config: pytest.Config) -> None:
    # One id per test run, inherited by xdist workers (they start after this), so the
    # end-of-run sweep deletes this run's leftovers and never another run's queues.
    os.environ.setdefault("CRMSYNC_TEST_RUN", uuid.uuid4().hex[:4])


def _run_id() -> str:
    return os.environ.get("CRMSYNC_TEST_RUN") or "0000"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Sweep what crashed or killed tests left behind (the controller only, at the end).

    A single RabbitMQ node slows down badly with hundreds of quorum queues, so a
    leak must not outlive the run. Needs ``rabbitmqctl`` (root, as in CI); skipped
    quietly without it.
    """
    if hasattr(session.config, "workerinput") or shutil.which("rabbitmqctl") is None:
        return
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "name", "-q", "--no-table-headers"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return
    this_run = re.compile(rf"^t{_run_id()}[0-9a-f]{{6}}\.")
    leftovers = [name for name in listed if this_run.match(name)]
    if leftovers:
        asyncio.run(_delete_queues(leftovers))


async def _delete_queues(names: list[str]) -> None:
    connection = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "sweep"})
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


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
            for unit in (0.05, 0.1, 0.2, 1.0, 30.0, 60.0)
            for n in (2, 3, 5)
        ]
        names: set[str] = set()
        retries: set[str] = set()
        for settings in settings_variants:
            for spec, _, _ in consumer_plan(settings):
                names |= {topology.queue(spec), topology.dead_queue(spec)}
                retries |= {topology.retry_queue(d) for d in spec.retry_delays_s}
        from shared.jobs import JOB_QUEUES
        from shared.queues import ALL

        for spec in (*ALL, *JOB_QUEUES.values(), TEST_JOBS_QUEUE):
            names |= {topology.queue(spec), topology.dead_queue(spec)}
        for name in names | retries:
            await channel.queue_delete(name)
        for exchange in (topology.events_exchange, topology.dead_exchange, *retries):
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
# Basic credentials of the tests' Commerce7 webhooks (intake refuses webhooks without).
COMMERCE7_USER = "c7-test"
COMMERCE7_PASSWORD = "test-commerce7-password"


def syncer_settings(database: str, namespace: str, sandbox: str, **overrides: Any) -> Any:
    from shared.settings import SyncerSettings

    values: dict[str, Any] = {
        "database_url": database,
        "amqp_url": AMQP_URL,
        "amqp_namespace": namespace,
        "shopify_base_url": f"{sandbox}/shopify",
        "commerce7_base_url": f"{sandbox}/commerce7/v1",
        "hubspot_base_url": f"{sandbox}/hubspot",
        "repcard_base_url": f"{sandbox}/repcard",
        "shopify_rate_per_s": 50,
        "commerce7_rate_per_s": 50,
        "retry_unit_s": 0.1,
        "outbox_poll_s": 0.05,
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
        "commerce7_webhook_username": COMMERCE7_USER,
        "commerce7_webhook_password": COMMERCE7_PASSWORD,
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


ADMIN_TOKEN = "test-admin-token-0123456789"
# One queue for the tests' own jobs (any name): every job event is routed to it.
TEST_JOBS_QUEUE = QueueSpec("tests.jobs", ("job.#",))


def scheduler_settings(database: str, namespace: str, **overrides: Any) -> Any:
    from shared.settings import SchedulerSettings

    values: dict[str, Any] = {
        "database_url": database,
        "amqp_url": AMQP_URL,
        "amqp_namespace": namespace,
        "admin_token": ADMIN_TOKEN,
        "outbox_poll_s": 0.05,
        "shutdown_grace_s": 2,
        "db_pool_max_size": 5,
    }
    values.update(overrides)
    return SchedulerSettings(_env_file=None, **values)


@pytest.fixture
async def make_scheduler(
    database: str, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await make_scheduler(settings, jobs=..., clock=..., run_loop=True)`` → a started
    in-process scheduler replica, stopped after the test (before its database goes)."""
    from services.scheduler.service import Scheduler

    started: list[Any] = []

    async def make(settings: Any, *, run_loop: bool = True, **kwargs: Any) -> Any:
        scheduler = Scheduler(settings, **kwargs)
        await scheduler.start(run_loop=run_loop)
        started.append(scheduler)
        return scheduler

    yield make
    for scheduler in started:
        await scheduler.stop()


@pytest.fixture
async def make_scheduler_app(
    database: str, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[str, web.Application]]]]:
    """``await make_scheduler_app(settings, **create_app_kwargs)`` → (base URL, app)."""
    from services.scheduler.main import create_app

    runners: list[web.AppRunner] = []

    async def make(settings: Any, **kwargs: Any) -> tuple[str, web.Application]:
        from services.scheduler.keys import scheduler_key

        app = create_app(settings, **kwargs)
        runner, url = await start_app(app)
        runners.append(runner)
        # The app starts without waiting for Postgres; the tests want it registered.
        await asyncio.wait_for(app[scheduler_key].wait_started(), 30)
        return url, app

    yield make
    for runner in runners:
        await runner.cleanup()


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


@pytest.fixture
async def spawn_syncer(database, namespace, sandbox) -> AsyncIterator[Callable]:
    """``await spawn_syncer(port, **env)``: a real ``crmsync syncer`` process."""
    procs: list[asyncio.subprocess.Process] = []
    workdir = tempfile.mkdtemp()  # no developer .env is read from here

    async def spawn(port: int, **env: str) -> asyncio.subprocess.Process:
        environ = {
            **os.environ,
            "CRMSYNC_DATABASE_URL": database,
            "CRMSYNC_AMQP_URL": AMQP_URL,
            "CRMSYNC_AMQP_NAMESPACE": namespace,
            "CRMSYNC_SHOPIFY_BASE_URL": f"{sandbox}/shopify",
            "CRMSYNC_COMMERCE7_BASE_URL": f"{sandbox}/commerce7/v1",
            "CRMSYNC_HUBSPOT_BASE_URL": f"{sandbox}/hubspot",
            "CRMSYNC_REPCARD_BASE_URL": f"{sandbox}/repcard",
            "CRMSYNC_SHOPIFY_RATE_PER_S": "100",
            "CRMSYNC_RETRY_UNIT_S": "0.1",
            "CRMSYNC_OUTBOX_POLL_S": "0.05",
            "CRMSYNC_LOG_FORMAT": "json",
            "CRMSYNC_PREFETCH_COUNT": "4",
            **env,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "syncer",
            "--port",
            str(port),
            env=environ,
            cwd=workdir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def ready(http, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return resp.status == 200
    except OSError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
