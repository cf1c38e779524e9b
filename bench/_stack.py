"""A crmsync stack for the benchmarks: its own databases, namespace and processes.

:class:`Stack` starts ``crmsync sandbox``, ``crmsync intake`` and ``crmsync syncer`` as
real processes (each in its own session, in a temporary working directory so that no
``.env`` is read, logging WARNING and up to a file), creates databases named
``bench_<hex>...`` (migrated), and gives every process the RabbitMQ namespace
``bench<hex>.``. :meth:`Stack.close` undoes all of it, on errors and Ctrl-C too:
it stops the processes, deletes every queue and exchange of the namespace (the names
crmsync declares, then whatever ``rabbitmqctl`` still lists under the prefix), and
drops the databases.

Used by ``bench/credits.py``, ``bench/hubspot_sync.py``, ``bench/packages.py`` and
``bench/scaling.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from _common import (
    PeakRss,
    cpu_seconds,
    free_port,
    peak_rss,
    peak_rss_report,
    peak_rss_results,
    stop_process,
    wait_http_ok,
)

PG_ADMIN = os.environ.get("CRMSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("CRMSYNC_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
CRMSYNC = str(Path(sys.executable).parent / "crmsync")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def dsn_of(name: str) -> str:
    """The DSN of database ``name`` on the bench's server."""
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@dataclass
class Service:
    """One running ``crmsync <role>`` process."""

    role: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def _settings_kwargs(env: Mapping[str, str]) -> dict[str, Any]:
    """``{"CRMSYNC_RETRY_UNIT_S": "1"}`` → ``{"retry_unit_s": "1"}`` (pydantic coerces)."""
    return {
        k.removeprefix("CRMSYNC_").lower(): v for k, v in env.items() if k.startswith("CRMSYNC_")
    }


@dataclass
class Stack:
    """Databases, a RabbitMQ namespace and crmsync processes of one bench run."""

    name: str
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    services: list[Service] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    # Each process's peak memory, read as it is stopped (issue 11, item 6).
    memory: list[PeakRss] = field(default_factory=list)
    tmp: Path = field(init=False)

    def __post_init__(self) -> None:
        from shared.logging import configure_logging

        configure_logging("WARNING", "console", service="bench")  # migrate's lines are noise
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))

    @property
    def namespace(self) -> str:
        return f"bench{self.tag}."

    # ------------------------------------------------------------ databases

    async def create_database(self, suffix: str = "", *, migrated: bool = True) -> str:
        """A new database ``bench_<tag><suffix>`` (migrated unless told not to); its DSN.

        It is dropped by :meth:`close`.
        """
        from shared.migrate import ensure_database, migrate

        name = f"bench_{self.tag}{suffix}"
        self.databases.append(name)
        dsn = dsn_of(name)
        if migrated:
            await migrate(dsn)
        else:
            await ensure_database(dsn)
        return dsn

    # ------------------------------------------------------------ processes

    def start(
        self,
        role: str,
        env: Mapping[str, str],
        *,
        ready_path: str,
        command: list[str] | None = None,
    ) -> Service:
        """``crmsync <role> --port <free port>`` (or ``command --port ...``) with ``env``
        (plus the namespace and logging), in its own session; returns once it is ready."""
        port = free_port()
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")},
            "CRMSYNC_AMQP_URL": AMQP_URL,
            "CRMSYNC_AMQP_NAMESPACE": self.namespace,
            "CRMSYNC_LOG_LEVEL": "WARNING",
            "CRMSYNC_LOG_FORMAT": "json",
            **env,
        }
        log_path = self.tmp / f"{role}-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*(command or [CRMSYNC, role]), "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.tmp,  # no .env here
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops us
            )
        service = Service(role, proc, port, log_path, full_env)
        self.services.append(service)
        try:
            wait_http_ok(f"{service.url}{ready_path}", 60, alive=service.alive)
        except RuntimeError:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        return service

    def sandbox(self) -> Service:
        """``crmsync sandbox`` (its HubSpot store indexes the properties it looks up by)."""
        return self.start("sandbox", {}, ready_path="/_sandbox/health")

    def intake(
        self, api_keys: Mapping[str, str], *, shopify_webhook_secret: str | None = None
    ) -> Service:
        """``crmsync intake`` with these API keys; ``shopify_webhook_secret`` for benches
        that sign Shopify webhooks (random otherwise, so intake does not warn)."""
        env = {
            "CRMSYNC_API_KEYS": json.dumps(dict(api_keys)),
            "CRMSYNC_SHOPIFY_WEBHOOK_SECRET": shopify_webhook_secret or secrets.token_urlsafe(16),
            # Not used by the benches; set so that intake does not warn about it.
            "CRMSYNC_COMMERCE7_TENANTS": "bench",
        }
        return self.start("intake", env, ready_path="/readyz")

    def syncer(self, database: str, sandbox: Service | None, **env: str) -> Service:
        """A syncer on ``database`` whose providers are ``sandbox`` (None: a port where
        nothing listens, for workloads that call no provider); ``env`` overrides."""
        providers = sandbox.url if sandbox is not None else "http://127.0.0.1:9"
        return self.start(
            "syncer",
            {
                "CRMSYNC_DATABASE_URL": database,
                "CRMSYNC_SHOPIFY_BASE_URL": f"{providers}/shopify",
                "CRMSYNC_COMMERCE7_BASE_URL": f"{providers}/commerce7/v1",
                "CRMSYNC_HUBSPOT_BASE_URL": f"{providers}/hubspot",
                "CRMSYNC_OUTBOX_POLL_S": "0.05",
                "CRMSYNC_SHUTDOWN_GRACE_S": "5",
                **env,
            },
            ready_path="/readyz",
        )

    def stop(self, service: Service) -> None:
        """Record ``service``'s peak RSS (it must still run to be read), then stop it."""
        if service.pid not in {m.pid for m in self.memory}:
            name, aim = f"{service.role}:{service.port}", service.role != "sandbox"
            # A process that already exited cannot be read: recorded as not measured.
            own = peak_rss(name, service.pid, aim=aim) if service.alive() else None
            self.memory.append(own or PeakRss(name, service.pid, None, aim=aim))
        stop_process(service.proc, timeout_s=15)

    # ------------------------------------------------------------ the end

    def close(self) -> None:
        """Stop every process, delete the namespace, drop the databases, remove files."""
        # A second Ctrl-C or SIGTERM must not cut the cleanup short.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
        try:
            for service in reversed(self.services):
                self.stop(service)
            self._report_logs()
            asyncio.run(self._delete_namespace())
            self._sweep_namespace()
            asyncio.run(self._drop_databases())
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _report_logs(self) -> None:
        """Say how many WARNING-and-up lines each process logged, and show the last few."""
        for service in self.services:
            try:
                lines = service.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                events = [_event_of(line) for line in lines]
                counts: dict[str, int] = {}
                for event in events:
                    counts[event] = counts.get(event, 0) + 1
                summary = ", ".join(f"{e} x{n}" for e, n in sorted(counts.items()))
                print(
                    f"{service.role} (:{service.port}) logged {len(lines)} line(s) at WARNING "
                    f"and up: {summary}",
                    file=sys.stderr,
                )
                for line in lines[-3:]:
                    print(f"  {line[:400]}", file=sys.stderr)

    def _queue_names(self) -> tuple[set[str], set[str]]:
        """(queues, exchanges) crmsync may have declared under the namespace."""
        from services.syncer.main import consumer_plan
        from shared import queues
        from shared.jobs import JOB_QUEUES
        from shared.settings import SyncerSettings
        from shared.topology import Topology

        topology = Topology(self.namespace)
        names: set[str] = set()
        exchanges = {topology.events_exchange, topology.dead_exchange}
        for spec in (*queues.ALL, *JOB_QUEUES.values()):
            names |= {topology.queue(spec), topology.dead_queue(spec)}
        for service in self.services:
            if service.role != "syncer":
                continue
            settings = SyncerSettings(_env_file=None, **_settings_kwargs(service.env))
            for spec, _, _ in consumer_plan(settings):
                names |= {topology.queue(spec), topology.dead_queue(spec)}
                retries = {topology.retry_queue(d) for d in spec.retry_delays_s}
                names |= retries
                exchanges |= retries
        return names, exchanges

    async def _delete_namespace(self) -> None:
        queues, exchanges = self._queue_names()
        connection = await aio_pika.connect(
            AMQP_URL, client_properties={"connection_name": f"bench-{self.name}-cleanup"}
        )
        try:
            channel = await connection.channel()
            for name in sorted(queues):
                await channel.queue_delete(name)
            for name in sorted(exchanges):
                await channel.exchange_delete(name)
        finally:
            await connection.close()

    def _sweep_namespace(self) -> None:
        """Delete whatever ``rabbitmqctl`` still lists under the namespace (needs root)."""
        if shutil.which("rabbitmqctl") is None:
            return
        left: dict[str, list[str]] = {}
        for kind in ("queues", "exchanges"):
            try:
                out = subprocess.run(
                    ["rabbitmqctl", f"list_{kind}", "name", "-q", "--no-table-headers"],
                    capture_output=True, text=True, timeout=60, check=True,
                ).stdout  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                return
            left[kind] = [n for n in out.split() if n.startswith(self.namespace)]
        if not any(left.values()):
            return
        print(f"deleting leftovers under {self.namespace}: {left}", file=sys.stderr)

        async def delete() -> None:
            connection = await aio_pika.connect(AMQP_URL)
            try:
                channel = await connection.channel()
                for name in left["queues"]:
                    await channel.queue_delete(name)
                for name in left["exchanges"]:
                    await channel.exchange_delete(name)
            finally:
                await connection.close()

        asyncio.run(delete())

    async def _drop_databases(self) -> None:
        if not self.databases:
            return
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            for name in self.databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def env_pair(text: str) -> tuple[str, str]:
    """``CRMSYNC_NAME=value`` → ``("CRMSYNC_NAME", "value")`` (an argparse ``type``)."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key.startswith("CRMSYNC_"):
        raise argparse.ArgumentTypeError("expected CRMSYNC_NAME=value")
    return key, value


def _event_of(line: str) -> str:
    try:
        record: Any = json.loads(line)
    except ValueError:
        return "(not JSON)"
    return str(record.get("event", "?")) if isinstance(record, dict) else "?"


async def sandbox_json(url: str, method: str = "GET", body: Any = None) -> Any:
    """One call to the sandbox's control API; its JSON answer."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body) as resp,
    ):
        resp.raise_for_status()
        return await resp.json()


async def queue_depths(namespace: str, names: list[str]) -> dict[str, int]:
    """Messages ready in each of the namespace's queues ``names`` (passive declare)."""
    depths: dict[str, int] = {}
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(namespace + name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                continue
            depths[name] = queue.declaration_result.message_count or 0
            await channel.close()
    finally:
        await connection.close()
    return depths


class PostgresCpu:
    """CPU used by every ``postgres`` process (server and backends, ours or not) between
    :meth:`start` and :meth:`stop`, in % of one core. Backends that start meanwhile
    count from zero; those that end meanwhile are lost (none of ours do)."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._cpu0: dict[int, float] = {}

    @staticmethod
    def _now() -> dict[int, float]:
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "comm").read_text().strip() == "postgres":
                        found[int(entry.name)] = cpu_seconds(int(entry.name))
                except OSError:
                    continue
        return found

    def start(self) -> None:
        self._t0, self._cpu0 = time.monotonic(), self._now()

    def stop(self) -> float:
        wall = time.monotonic() - self._t0
        used = sum(max(0.0, c - self._cpu0.get(p, 0.0)) for p, c in self._now().items())
        return round(100 * used / wall, 1)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def bench_main(
    name: str,
    args: Any,
    run: Callable[[Stack, Any], Coroutine[Any, Any, dict[str, Any]]],
    report: Callable[[dict[str, Any]], str],
) -> int:
    """Run one bench on its own :class:`Stack`, print its report, write ``args.output``.

    SIGTERM and Ctrl-C both end in ``Stack.close()``; returns the process exit code.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stack = Stack(name)
    try:
        results = asyncio.run(run(stack, args))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what the bench started", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.close()
    results["peak_rss"] = peak_rss_results(stack.memory)
    print()
    print(report(results))
    print(peak_rss_report(results["peak_rss"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"figures written to {args.output}")
    return 0
