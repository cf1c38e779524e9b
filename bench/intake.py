"""Intake throughput and latency against the broker's ceiling, all in one run.

The body is the real Shopify order ``tests/fixtures/shopify_order_450789469.json``
(27,799 bytes, sent as raw bytes, signed with the secret the bench gives intake).
Five measurements, each ``--duration`` seconds after ``--warmup`` seconds of the same
load that is not counted:

1. **intake, full speed**: ``crmsync intake`` as a real process (namespace
   ``bench<random>.``, no syncer), hit by ``wrk -t1 -c<connections> --latency`` with
   signed ``orders/paid`` webhooks. Every 200 means RabbitMQ confirmed a persistent
   message on the quorum queue ``<ns>syncer.orders``; the queue depth is checked
   against wrk's count afterwards.
2. **bare aiohttp**: the same wrk load against an aiohttp handler that reads the body
   and returns 200 (a separate process): what HTTP alone costs.
3. **broker ceiling from Python**: an aio-pika loop in this process publishing the same
   bytes and headers, persistent, mandatory, with publisher confirms, through a topic
   exchange to a quorum queue declared by ``Topology.declare`` like ours, keeping
   ``<connections>`` publishes in flight (one channel, as intake has).
4. **intake at half of (1)'s rate**: plain wrk cannot hold a constant rate (that is
   wrk2's ``-R``), so an open-loop aiohttp client in a separate process sends at fixed
   intervals and times each request from the moment it was *scheduled*, so a stall
   counts against intake instead of silently lowering the rate (no coordinated
   omission).
5. **a FastStream peer**: the same wrk load as (1) against the same endpoint written
   the way FastStream's documentation shows (``bench/_faststream_peer.py``, its own
   process): same HMAC check, a pydantic model of the same fields, FastStream's
   ``RabbitBroker`` publishing the same bytes, persistent, mandatory, confirmed, to
   the same quorum queue through the topic exchange, 200 after the publish returns.
   Skipped with ``--skip-peer`` or when faststream is not installed (a dev extra).

It prints rate, p50 and p99 of each, intake ÷ ceiling (aim ≥ 0.8: the broker, not
intake, should limit us), intake ÷ bare, intake ÷ FastStream (aim ≥ 1.2) with the
server CPU per request of both, whether p99 at half rate is under 20 ms, and the peak
RSS of each intake process (aim < 150 MB); the CPU each process used (100 % = one
core) shows who the bottleneck is. The figures also go to
``bench/results/intake.json``. Queues are purged between phases and each measurement
waits until RabbitMQ is idle again; the namespace is deleted at the end, and every
process the bench started is stopped, on Ctrl-C and errors too. A phase during which
other processes took more than 15 % of a core is flagged: its figures are not to be
trusted.

With ``--own-broker`` every phase runs against a private RabbitMQ node the bench starts
(its own ports, config and data under a temporary folder; ``bench/_own_broker.py``),
with ``--broker-setting KEY=VALUE`` lines in its ``rabbitmq.conf``; it is stopped and
deleted at the end, on Ctrl-C and SIGTERM too. The machine's RabbitMQ is not touched.

Phases (3) and (4) also record each publish's / request's latency with its start time
and print the *stalls*, the spans where latency exceeded ``--stall-ms`` (20), with
start (s since the phase's measured start), duration and max; with ``--own-broker``
also the WAL rollovers the bench saw in the node's data dir, so a stall that lines up
with one shows (``bench/_stalls.py``). The series go to ``<output>-series.csv``.

    .venv/bin/python bench/intake.py [--duration 10] [--connections 32] [--warmup 2]
                                     [--skip-peer] [--stall-ms 20] [--own-broker
                                     [--broker-setting KEY=VALUE ...]]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from _common import (
    RESULTS,
    ROOT,
    WRK_MISSING,
    CpuMeter,
    PeakRss,
    descendants,
    free_port,
    has_wrk,
    idle_percent,
    peak_rss,
    peak_rss_report,
    peak_rss_results,
    percentile,
    pid_of,
    run_wrk,
    stop_process,
    wait_http_ok,
    wait_until_quiet,
    wrk_post_script,
)
from _own_broker import OwnBroker, broker_setting, own_broker
from _own_broker import report_line as broker_report_line
from _stalls import WalWatcher, phase_block
from _stalls import report_lines as stall_report_lines
from aio_pika.abc import AbstractConnection
from aiohttp import web

from services.intake.auth import shopify_hmac
from shared import queues
from shared.events import CloudEvent
from shared.messages.orders import shopify_event_type
from shared.topology import QueueSpec, Topology

BODY_PATH = ROOT / "tests" / "fixtures" / "shopify_order_450789469.json"
TOPIC = "orders/paid"
WEBHOOK_ID = "bench-0000-0000-0000-000000000001"  # intake does not dedupe; one id is fine
CEILING = QueueSpec("bench.ceiling", ("bench.ceiling",))
AIM_RATIO = 0.8
AIM_P99_MS = 20.0
AIM_PEER_RATIO = 1.2  # intake ÷ the FastStream peer (issue 11, item 7)
# Intake's CPU per accepted webhook ÷ the bare handler's per request, at most (item 1).
AIM_CPU_OVER_BARE = 4.0
SPAWN = multiprocessing.get_context("spawn")
# Seconds to let RabbitMQ finish with a purge before a queue may be deleted (see close()).
PURGE_SETTLE_S = 5.0
# CPU (% of a core) other processes may use during a phase before we call it disturbed.
OTHER_CPU_WARN = 15.0
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Phase:
    """One measurement. Latencies in milliseconds; ``cpu`` in % of one core."""

    key: str
    label: str
    unit: str
    rate: float
    p50_ms: float
    p99_ms: float
    count: int
    errors: dict[str, int]
    cpu: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------ child processes


def _own_session() -> None:
    """Leave the terminal's process group: Ctrl-C reaches only the bench, which stops us."""
    os.setsid()


def _serve_bare(port: int) -> None:
    """(2)'s server: read the body, answer 200. Runs in its own process."""
    _own_session()

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/webhooks/shopify", webhook)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> str:
    """POST once; the outcome is the status code or the exception's name."""
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return str(resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def _open_loop(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    rate: float,
    duration_s: float,
    warmup_s: float,
    connections: int,
) -> dict[str, Any]:
    """Send at ``rate`` per second on a fixed schedule, whatever the answers do.

    Latency runs from each request's scheduled time to its response's last byte;
    ``series`` holds ``(scheduled, latency_s)`` of each measured request (monotonic s).
    """
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        measure_from = start + warmup_s
        total = int(rate * (warmup_s + duration_s))
        latencies: list[float] = []
        series: list[tuple[float, float]] = []
        lateness: list[float] = []
        outcomes: Counter[str] = Counter()
        tasks: set[asyncio.Task[None]] = set()

        async def one(scheduled: float) -> None:
            outcome = await _post(session, url, body, headers)
            if scheduled >= measure_from:
                latencies.append(loop.time() - scheduled)
                series.append((scheduled, latencies[-1]))
                outcomes[outcome] += 1

        sent = 0
        while sent < total:
            now = loop.time()
            due = start + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # The loop wakes a little late; send every request that is due by now.
            while sent < total and start + sent / rate <= now:
                scheduled = start + sent / rate
                if scheduled >= measure_from:
                    lateness.append(now - scheduled)
                task = asyncio.create_task(one(scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
        await asyncio.gather(*tasks)
    return {
        "count": len(latencies),
        "rate": len(latencies) / duration_s,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p90_ms": 1000 * percentile(latencies, 90),
        "p99_ms": 1000 * percentile(latencies, 99),
        "max_ms": 1000 * max(latencies, default=float("nan")),
        "outcomes": dict(outcomes),
        "send_lateness_p99_ms": 1000 * percentile(lateness, 99),
        "measure_from": measure_from,
        "series": series,
    }


async def _closed_loop(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    duration_s: float,
    warmup_s: float,
    connections: int,
) -> dict[str, Any]:
    """``connections`` clients, each sending its next request when the last returns
    (what wrk does); the fallback when wrk is not installed."""
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_s
        end = measure_from + duration_s
        latencies: list[float] = []
        outcomes: Counter[str] = Counter()

        async def client() -> None:
            while (sent := loop.time()) < end:
                outcome = await _post(session, url, body, headers)
                done = loop.time()
                if measure_from <= done <= end:
                    latencies.append(done - sent)
                    outcomes[outcome] += 1

        await asyncio.gather(*(client() for _ in range(connections)))
    return {
        "count": len(latencies),
        "rate": len(latencies) / duration_s,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p90_ms": 1000 * percentile(latencies, 90),
        "p99_ms": 1000 * percentile(latencies, 99),
        "max_ms": 1000 * max(latencies, default=float("nan")),
        "outcomes": dict(outcomes),
    }


def _http_load(conn: Connection, mode: str, kwargs: dict[str, Any]) -> None:
    """Child process entry: run the open- or closed-loop client, send back its figures."""
    _own_session()
    runner = _open_loop if mode == "open" else _closed_loop
    conn.send(asyncio.run(runner(**kwargs)))
    conn.close()


# ------------------------------------------------------------------- the bench


class Bench:
    """The processes, namespace and temp files of one run; ``close()`` undoes them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.amqp_url: str = args.amqp_url
        self.namespace = f"bench{secrets.token_hex(4)}."
        self.topology = Topology(self.namespace)
        self.secret = secrets.token_urlsafe(24)
        self.body = BODY_PATH.read_bytes()
        self.headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": TOPIC,
            "X-Shopify-Webhook-Id": WEBHOOK_ID,
            "X-Shopify-Shop-Domain": "bench.myshopify.com",
            "X-Shopify-Hmac-Sha256": shopify_hmac(self.body, self.secret),
        }
        self.broker_pid = pid_of("beam.smp")
        self._stack = ExitStack()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        self.wrk_script = self.tmp / "post.lua"
        self.wrk_script.write_text(wrk_post_script(BODY_PATH, self.headers))
        self.declared = False
        self.purged_at = -PURGE_SETTLE_S
        # Peak RSS of each crmsync process, read just before it is stopped.
        self.memory: list[PeakRss] = []
        # The worker processes of ``intake(workers=N)`` while it runs.
        self.worker_pids: list[int] = []
        self.peer_memory: PeakRss | None = None
        # How intake is started (``--host`` and ``--port`` are added).
        self.intake_command = [str(Path(sys.executable).parent / "crmsync"), "intake"]
        # --own-broker's node and the watcher of its WAL (see open_broker()).
        self.own: OwnBroker | None = None
        self.wal: WalWatcher | None = None
        # Per phase key: (measured start, [(started_at, latency_s)]), monotonic seconds.
        self.series: dict[str, tuple[float, list[tuple[float, float]]]] = {}

    def open_broker(self) -> None:
        """With ``--own-broker``: start the private node, point every phase at it, watch
        its WAL. ``close()`` stops and deletes it."""
        if not self.args.own_broker:
            return
        print("starting a RabbitMQ node of the bench's own ...", flush=True)
        self.own = self._stack.enter_context(own_broker(dict(self.args.broker_setting)))
        self.amqp_url = self.own.amqp_url
        self.broker_pid = self.own.beam_pid
        self.wal = self._stack.enter_context(WalWatcher(self.own.wal_dir).running())

    # -- processes

    @contextmanager
    def intake(self, workers: int = 1) -> Iterator[tuple[str, int]]:
        """``crmsync intake [--workers N]`` in its own process and session, ready (every
        worker); yields (url, pid of the parent)."""
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")},
            "CRMSYNC_AMQP_URL": self.amqp_url,
            "CRMSYNC_AMQP_NAMESPACE": self.namespace,
            "CRMSYNC_SHOPIFY_WEBHOOK_SECRET": self.secret,
            "CRMSYNC_LOG_LEVEL": "WARNING",
            "CRMSYNC_LOG_FORMAT": "json",
        }
        log_path = self.tmp / "intake.log"
        with log_path.open("wb") as log:
            many = ["--workers", str(workers)] if workers > 1 else []
            proc = subprocess.Popen(
                [*self.intake_command, *many, "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.tmp,  # no .env here
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.declared = True
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                wait_http_ok(f"{url}/readyz", 30, alive=lambda: proc.poll() is None)
                if workers > 1:
                    self.worker_pids = _wait_workers_ready(url, proc.pid, workers)
            except RuntimeError:
                sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
                raise
            yield url, proc.pid
        finally:
            if proc.poll() is None:
                self.memory.append(peak_rss(f"intake:{port}", proc.pid))
            stop_process(proc)
            errors = log_path.read_text(errors="replace").strip()
            if errors:
                print(f"intake logged (WARNING and up):\n{errors[-2000:]}", file=sys.stderr)

    @contextmanager
    def bare_server(self) -> Iterator[tuple[str, int]]:
        """(2)'s bare aiohttp server in its own process, ready; yields (url, pid)."""
        port = free_port()
        proc = SPAWN.Process(target=_serve_bare, args=(port,), daemon=True)
        proc.start()
        assert proc.pid is not None
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{url}/readyz", 20, alive=proc.is_alive)
            yield url, proc.pid
        finally:
            _stop_child(proc)

    @contextmanager
    def peer_server(self) -> Iterator[tuple[str, int]]:
        """(5)'s FastStream peer in its own process, ready; yields (url, pid)."""
        from _faststream_peer import serve  # imports faststream, a dev-only dependency

        port = free_port()
        args = (port, self.amqp_url, self.topology.events_exchange, self.secret)
        proc = SPAWN.Process(target=serve, args=args, daemon=True)
        proc.start()
        assert proc.pid is not None
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{url}/readyz", 30, alive=proc.is_alive)
            yield url, proc.pid
        finally:
            if proc.is_alive():
                self.peer_memory = peak_rss(f"faststream peer:{port}", proc.pid, aim=False)
            _stop_child(proc)

    def http_load(self, mode: str, meter_pids: dict[str, int], **kwargs: Any) -> dict[str, Any]:
        """Run the aiohttp load generator in a separate process; its figures and CPU use."""
        receive, send = SPAWN.Pipe(duplex=False)
        proc = SPAWN.Process(target=_http_load, args=(send, mode, kwargs), daemon=True)
        proc.start()
        assert proc.pid is not None
        send.close()
        meter = CpuMeter({**meter_pids, "loadgen": proc.pid})
        try:
            # Count only the measured seconds, not the generator's warm-up.
            time.sleep(kwargs["warmup_s"])
            meter.start()
            result: dict[str, Any] = receive.recv()
            meter.stop()
            result["cpu"] = _cpu_with_other(meter, meter.percent)
            return result
        except EOFError as exc:
            raise RuntimeError("the load generator died") from exc
        finally:
            _stop_child(proc)

    # -- load

    def warm_up(self, url: str) -> None:
        """``--warmup`` seconds of the closed-loop load, not counted."""
        if self.args.warmup > 0:
            self._closed_load(url, {}, duration_s=self.args.warmup)

    def measure(
        self, url: str, server_pid: int, *, key: str, label: str, workers: Sequence[int] = ()
    ) -> Phase:
        """(1), (2), (5) and (6): the closed-loop load at full speed for ``--duration``
        seconds; the CPU of ``workers`` counts as the server's."""
        named = {f"worker{i}": pid for i, pid in enumerate(workers, 1)}
        pids = {"server": server_pid, **named, **self.broker_pids()}
        load = self._closed_load(url, pids, self.args.duration)
        for name in named:
            load["cpu"]["server"] = round(load["cpu"]["server"] + load["cpu"].pop(name), 1)
        return Phase(key=key, label=label, **load)

    def _closed_load(self, url: str, pids: dict[str, int], duration_s: float) -> dict[str, Any]:
        target = f"{url}/webhooks/shopify"
        conns = self.args.connections
        if self.args.loadgen == "aiohttp":
            r = self.http_load(
                "closed",
                pids,
                url=target,
                body=self.body,
                headers=self.headers,
                duration_s=duration_s,
                warmup_s=0,
                connections=conns,
            )
            errors = {k: v for k, v in r["outcomes"].items() if not k.startswith("2")}
            return {
                "unit": "req/s",
                "rate": r["rate"] - sum(errors.values()) / duration_s,
                "p50_ms": r["p50_ms"],
                "p99_ms": r["p99_ms"],
                "count": r["count"],
                "errors": errors,
                "cpu": r["cpu"],
                "extra": {"p90_ms": r["p90_ms"], "max_ms": r["max_ms"], "loadgen": "aiohttp"},
            }
        meter = CpuMeter(pids)
        meter.start()
        w = run_wrk(target, self.wrk_script, connections=conns, duration_s=duration_s)
        return {
            "unit": "req/s",
            "rate": (w.requests - w.errors.get("status", 0)) / w.duration_s,
            "p50_ms": w.p50_ms,
            "p99_ms": w.p99_ms,
            "count": w.requests,
            "errors": w.errors,
            "cpu": _cpu_with_other(meter, {**meter.stop(), "loadgen": w.cpu_percent}),
            "extra": {
                "p90_ms": w.p90_ms,
                "max_ms": w.max_ms,
                "mean_ms": w.mean_ms,
                "loadgen": "wrk",
                "wrk_output": w.output,
            },
        }

    def ceiling(self) -> Phase:
        """(3): aio-pika publishing the same message, ``connections`` in flight."""
        meter = CpuMeter({"publisher": os.getpid(), **self.broker_pids()})
        r = asyncio.run(
            _ceiling(
                self.amqp_url,
                self.topology,
                self.body,
                self._amqp_event(),
                in_flight=self.args.connections,
                duration_s=self.args.duration,
                warmup_s=self.args.warmup,
                meter=meter,
            )
        )
        self.declared = True
        self.series["ceiling"] = (r["measure_from"], r["series"])
        return Phase(
            key="ceiling",
            label=f"(3) aio-pika ceiling, {self.args.connections} in flight",
            unit="msg/s",
            rate=r["rate"],
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
            count=r["count"],
            errors={},
            cpu=_cpu_with_other(meter, meter.percent),
            extra={"p90_ms": r["p90_ms"], "max_ms": r["max_ms"]},
        )

    # -- broker housekeeping

    def broker_pids(self) -> dict[str, int]:
        """``{"broker": pid}`` of RabbitMQ when it runs on this machine (to read its CPU)."""
        return {"broker": self.broker_pid} if self.broker_pid else {}

    def _amqp_event(self) -> CloudEvent:
        return CloudEvent.create(
            id=WEBHOOK_ID,
            type=shopify_event_type(TOPIC),
            source="https://bench.myshopify.com",
            subject="450789469",
            data=self.body,
        )

    def purge(self) -> dict[str, int]:
        """Empty the namespace's work queues; how many messages each held."""
        counts = asyncio.run(_purge(self.amqp_url, self._queue_names(dead=False)))
        self.purged_at = time.monotonic()
        return counts

    def settle(self) -> None:
        """Let RabbitMQ finish what a purge leaves behind (dropping segments) first."""
        if self.broker_pid:
            wait_until_quiet(self.broker_pid)

    def _queue_names(self, *, dead: bool) -> list[str]:
        """The work queues intake and (3) declare; with ``dead``, every queue they declare."""
        specs = (*queues.ALL, CEILING)
        names = [self.topology.queue(s) for s in specs]
        if dead:
            names += [self.topology.dead_queue(s) for s in specs]
            names += self._retry_names()
        return names

    def _retry_names(self) -> list[str]:
        """Retry queues (and their exchanges of the same name), if intake's specs have any."""
        delays = {d for spec in queues.ALL for d in spec.retry_delays_s}
        return sorted(self.topology.retry_queue(d) for d in delays)

    def close(self) -> None:
        """Delete the namespace's queues and exchanges, remove the temp files."""
        try:
            if self.declared and self.own is None:  # an own node goes away whole
                # RabbitMQ 3.10's Ra segment writer crashes (taking every quorum queue's
                # log down with it, rabbitmq-server#4512) when a quorum queue is deleted
                # while it still truncates that queue's segments after a purge
                # (rabbitmq/ra#484, fixed in later Ra). So queues are deleted full,
                # never right after a purge.
                time.sleep(max(0.0, self.purged_at + PURGE_SETTLE_S - time.monotonic()))
                asyncio.run(
                    _delete(
                        self.amqp_url,
                        self._queue_names(dead=True),
                        [
                            self.topology.events_exchange,
                            self.topology.dead_exchange,
                            *self._retry_names(),
                        ],
                    )
                )
        finally:
            self._stack.close()


def _cpu_with_other(meter: CpuMeter, cpu: dict[str, float]) -> dict[str, float]:
    """``cpu`` plus ``other`` (what other processes used meanwhile), ``irq``, ``steal``."""
    other = round(max(0.0, meter.machine - sum(cpu.values())), 1)
    return {**cpu, "other": other, "irq": meter.irq, "steal": meter.steal}


def _stop_child(proc: multiprocessing.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()


async def _ceiling(
    amqp_url: str,
    topology: Topology,
    body: bytes,
    event: CloudEvent,
    *,
    in_flight: int,
    duration_s: float,
    warmup_s: float,
    meter: CpuMeter,
) -> dict[str, Any]:
    connection = await _connect(amqp_url, "crmsync-bench-ceiling")
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await topology.declare(channel, [CEILING])
        exchange = await channel.get_exchange(topology.events_exchange)
        headers = event.amqp_headers()
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_s
        end = measure_from + duration_s
        latencies: list[float] = []
        series: list[tuple[float, float]] = []  # (sent, latency_s) of each measured confirm

        async def publisher() -> None:
            while (sent := loop.time()) < end:
                message = aio_pika.Message(
                    body=body,
                    headers=headers,
                    content_type=event.datacontenttype,
                    message_id=event.id,
                    correlation_id=event.correlationid,
                    type=event.type,
                    timestamp=event.time,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(message, routing_key=CEILING.routing_keys[0], mandatory=True)
                done = loop.time()
                if measure_from <= done <= end:
                    latencies.append(done - sent)
                    series.append((sent, done - sent))

        async def metered() -> None:
            await asyncio.sleep(warmup_s)
            meter.start()
            await asyncio.sleep(duration_s)
            meter.stop()

        await asyncio.gather(metered(), *(publisher() for _ in range(in_flight)))
    return {
        "count": len(latencies),
        "rate": len(latencies) / duration_s,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p90_ms": 1000 * percentile(latencies, 90),
        "p99_ms": 1000 * percentile(latencies, 99),
        "max_ms": 1000 * max(latencies, default=float("nan")),
        "measure_from": measure_from,
        "series": series,
    }


async def _connect(amqp_url: str, name: str = "crmsync-bench") -> AbstractConnection:
    """Connect, or fail within ``CONNECT_TIMEOUT_S`` instead of hanging on a stuck broker."""
    try:
        return await aio_pika.connect(
            amqp_url, client_properties={"connection_name": name}, timeout=CONNECT_TIMEOUT_S
        )
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
        raise RuntimeError(f"RabbitMQ at {amqp_url} did not accept a connection: {exc!r}") from exc


async def _purge(amqp_url: str, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with await _connect(amqp_url) as connection:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                continue  # not declared (yet)
            result = await queue.purge()
            counts[name] = result.message_count or 0
    return counts


async def _declare(amqp_url: str, topology: Topology, specs: list[QueueSpec]) -> None:
    """Declare ``specs`` as intake does (a no-op when intake already has)."""
    async with await _connect(amqp_url) as connection:
        await topology.declare(await connection.channel(), specs)


async def _delete(amqp_url: str, queue_names: list[str], exchanges: list[str]) -> None:
    async with await _connect(amqp_url) as connection:
        channel = await connection.channel()
        for name in queue_names:
            await channel.queue_delete(name)
        for name in exchanges:
            await channel.exchange_delete(name)


async def _broker_version(amqp_url: str) -> str:
    async with await _connect(amqp_url) as connection:
        assert connection.transport is not None
        props = connection.transport.connection.server_properties

        def text(key: str) -> str:
            value = props.get(key, "?")
            return value.decode() if isinstance(value, bytes) else str(value)

        return f"{text('product')} {text('version')}"


def _publish_metrics(url: str) -> tuple[float, float]:
    """intake's ``crmsync_publish_seconds`` (sum, count) from ``/metrics``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = dict(re.findall(r"^crmsync_publish_seconds_(sum|count) (\S+)$", text, re.M))
    return float(values.get("sum", 0)), float(values.get("count", 0))


# ---------------------------------------------------------------------- the run


def peer_phase(bench: Bench) -> Phase:
    """(5): the FastStream peer under (1)'s load, publishing to (1)'s queue."""
    conns = bench.args.connections
    asyncio.run(_declare(bench.amqp_url, bench.topology, [queues.ORDERS]))
    bench.declared = True
    with bench.peer_server() as (url, pid):
        print("(5) FastStream peer at full speed ...", flush=True)
        bench.warm_up(url)
        bench.purge()
        bench.settle()
        label = f"(5) FastStream peer, full speed ({conns} conns)"
        p = bench.measure(url, pid, key="peer", label=label)
    p.extra["queue_depth_after"] = bench.purge().get(bench.topology.queue(queues.ORDERS), 0)
    if bench.peer_memory is not None:
        p.extra["peak_rss_mb"] = bench.peer_memory.peak_mb
    bench.settle()
    return p


def workers_phase(bench: Bench, workers: int) -> Phase:
    """(6): ``crmsync intake --workers N`` under (1)'s load; its CPU is the workers'."""
    conns = bench.args.connections
    with bench.intake(workers=workers) as (url, pid):
        print(f"(6) intake with --workers {workers} at full speed ...", flush=True)
        bench.warm_up(url)
        bench.purge()
        bench.settle()
        label = f"(6) intake --workers {workers}, full speed ({conns} conns)"
        p = bench.measure(url, pid, key="workers", label=label, workers=bench.worker_pids)
        p.extra["workers"] = workers
    p.extra["queue_depth_after"] = bench.purge().get(bench.topology.queue(queues.ORDERS), 0)
    bench.settle()
    return p


def _wait_workers_ready(url: str, parent: int, workers: int) -> list[int]:
    """The ``workers`` worker pids of ``parent`` once each answers ``/readyz``: every
    request on a fresh connection, which the kernel hands to any worker, must answer
    200 ten times in a row per worker.

    Raises:
        RuntimeError: not all workers up, or not all ready, within 30 s.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [p for p in descendants(parent) if "spawn_main" in _cmdline(p)]
        if len(found) >= workers:
            try:
                for _ in range(10 * workers):
                    wait_http_ok(f"{url}/readyz", 1)
                return found
            except RuntimeError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"intake --workers {workers}: not every worker ready after 30 s")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_per_request_us(phase: Phase) -> dict[str, float | None]:
    """CPU time per answered request in µs: the server's, and with RabbitMQ's."""
    if not phase.rate:
        return {"server": None, "server_and_broker": None}
    server = phase.cpu.get("server", 0.0)
    broker = phase.cpu.get("broker", 0.0)
    # cpu is % of one core: % / 100 = core-seconds per second of wall time.
    return {
        "server": round(1e6 * server / 100 / phase.rate, 1),
        "server_and_broker": round(1e6 * (server + broker) / 100 / phase.rate, 1),
    }


def run(bench: Bench) -> dict[str, Any]:
    """The phases, in the order (1), (4), (2), (5), (6), (3); the figures as a JSON-able dict."""
    args = bench.args
    started = time.monotonic()
    phases: dict[str, Phase] = {}
    conns = args.connections
    gen = "wrk -t1" if args.loadgen == "wrk" else "aiohttp client (fallback)"
    idle_before = round(idle_percent(), 1)
    environment = {
        "cpus": os.cpu_count(),
        "idle_percent_before": idle_before,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "aio_pika": aio_pika.__version__,
        "broker": asyncio.run(_broker_version(bench.amqp_url)),
        "body_bytes": len(bench.body),
    }
    if idle_before < 90:
        print(
            f"warning: the machine is only {idle_before:.0f} % idle "
            "before the run; something else is busy and the figures will be low",
            file=sys.stderr,
        )

    print(
        f"namespace {bench.namespace}  body {len(bench.body):,} B  load: {gen}, {conns} "
        f"connections, {args.duration:g} s per phase after {args.warmup:g} s warm-up"
    )
    with bench.intake() as (url, pid):
        print("(1) intake at full speed ...", flush=True)
        bench.warm_up(url)
        bench.purge()
        bench.settle()
        confirm_s0, published0 = _publish_metrics(url)
        p = bench.measure(url, pid, key="intake", label=f"(1) intake, full speed ({conns} conns)")
        confirm_s1, published1 = _publish_metrics(url)
        p.extra["published"] = int(published1 - published0)
        p.extra["queue_depth_after"] = bench.purge().get(bench.topology.queue(queues.ORDERS), 0)
        p.extra["mean_confirm_wait_ms"] = (
            1000 * (confirm_s1 - confirm_s0) / max(1.0, published1 - published0)
        )
        phases["intake"] = p
        bench.settle()

        half = p.rate / 2
        print(f"(4) intake at half rate, {half:.0f} req/s open loop ...", flush=True)
        r = bench.http_load(
            "open",
            {"server": pid, **bench.broker_pids()},
            url=f"{url}/webhooks/shopify",
            body=bench.body,
            headers=bench.headers,
            rate=half,
            duration_s=args.duration,
            warmup_s=args.warmup,
            connections=conns,
        )
        bench.series["half_rate"] = (r.pop("measure_from"), r.pop("series"))
        bench.purge()
        bench.settle()
        phases["half_rate"] = Phase(
            key="half_rate",
            label=f"(4) intake at {half:,.0f} req/s, open loop",
            unit="req/s",
            rate=r["rate"],
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
            count=r["count"],
            errors={k: v for k, v in r["outcomes"].items() if not k.startswith("2")},
            cpu=r["cpu"],
            extra={
                "target_rate": half,
                "p90_ms": r["p90_ms"],
                "max_ms": r["max_ms"],
                "send_lateness_p99_ms": r["send_lateness_p99_ms"],
                "loadgen": "aiohttp open loop",
            },
        )

    with bench.bare_server() as (url, pid):
        print("(2) bare aiohttp at full speed ...", flush=True)
        bench.warm_up(url)
        label = f"(2) bare aiohttp, full speed ({conns} conns)"
        phases["bare"] = bench.measure(url, pid, key="bare", label=label)

    if args.skip_peer:
        print("(5) FastStream peer: skipped (--skip-peer)")
    elif importlib.util.find_spec("faststream") is None:
        print("(5) FastStream peer: skipped, faststream is not installed (make install)")
    else:
        phases["peer"] = peer_phase(bench)

    if args.workers > 1:
        phases["workers"] = workers_phase(bench, args.workers)

    print("(3) aio-pika ceiling ...", flush=True)
    bench.settle()
    phases["ceiling"] = bench.ceiling()  # its queue is deleted full by close()

    intake, ceiling, bare = phases["intake"].rate, phases["ceiling"].rate, phases["bare"].rate
    peer = phases["peer"].rate if "peer" in phases else None
    over_peer = intake / peer if peer else None
    cpu_us = {
        k: cpu_per_request_us(phases[k])
        for k in ("intake", "bare", "peer", "workers")
        if k in phases
    }
    intake_us, bare_us = cpu_us["intake"]["server"], cpu_us["bare"]["server"]
    cpu_over_bare = intake_us / bare_us if intake_us and bare_us else None
    workers = phases["workers"].rate if "workers" in phases else None
    taken = {k: p.cpu["other"] + p.cpu["steal"] for k, p in phases.items()}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": conns,
            "loadgen": args.loadgen,
            "wrk_threads": 1,
            "namespace": bench.namespace,
        },
        "environment": environment,
        "phases": {k: asdict(v) for k, v in phases.items()},
        "ratios": {
            "intake_over_ceiling": intake / ceiling if ceiling else None,
            "intake_over_bare": intake / bare if bare else None,
            "intake_over_faststream": over_peer,
            "intake_cpu_over_bare_cpu": cpu_over_bare,
            "workers_over_ceiling": workers / ceiling if workers and ceiling else None,
            "workers_over_intake": workers / intake if workers and intake else None,
        },
        "cpu_per_request_us": cpu_us,
        "aims": {
            "intake_over_ceiling_at_least": AIM_RATIO,
            "intake_over_ceiling_met": bool(ceiling) and intake / ceiling >= AIM_RATIO,
            "p99_at_half_rate_under_ms": AIM_P99_MS,
            "p99_at_half_rate_met": phases["half_rate"].p99_ms < AIM_P99_MS,
            "intake_over_faststream_at_least": AIM_PEER_RATIO,
            "intake_over_faststream_met": over_peer is not None and over_peer >= AIM_PEER_RATIO,
            "intake_cpu_over_bare_cpu_at_most": AIM_CPU_OVER_BARE,
            "intake_cpu_over_bare_cpu_met": cpu_over_bare is not None
            and cpu_over_bare <= AIM_CPU_OVER_BARE,
        },
        # Phases during which other processes took more CPU than OTHER_CPU_WARN.
        "disturbed": {k: v for k, v in taken.items() if v > OTHER_CPU_WARN},
        "peak_rss": peak_rss_results(bench.memory),
        "broker": _broker_block(bench),
        "stalls": {
            key: phase_block(
                samples,
                origin=origin,
                duration_s=args.duration,
                threshold_ms=args.stall_ms,
                watcher=bench.wal,
            )
            for key, (origin, samples) in bench.series.items()
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _broker_block(bench: Bench) -> dict[str, Any]:
    """Whose broker the run used; an own node's settings and what it reports."""
    if bench.own is not None:
        return bench.own.as_dict()
    host = bench.amqp_url.rsplit("@", 1)[-1].rstrip("/")  # no credentials in the report
    return {"own": False, "address": host}


def write_series(bench: Bench, path: Path) -> None:
    """(3)'s and (4)'s latency series as CSV: phase, t_s since its measured start, latency_ms."""
    with path.open("w") as out:
        out.write("phase,t_s,latency_ms\n")
        for key, (origin, samples) in bench.series.items():
            for t, latency in sorted(samples):
                out.write(f"{key},{t - origin:.4f},{1000 * latency:.3f}\n")


def report(results: dict[str, Any]) -> str:
    """The table and the verdicts, as printed."""
    phases = results["phases"]
    rows = [
        f"{'phase':<40} {'rate':>15} {'p50':>9} {'p99':>9} {'max':>9} {'errors':>6}"
        "   CPU, % of a core: server · load gen · RabbitMQ · other (irq)"
    ]
    for key in ("intake", "bare", "peer", "workers", "ceiling", "half_rate"):
        if key not in phases:
            continue
        p = phases[key]
        cpu = p["cpu"]
        server = cpu.get("server", cpu.get("publisher", 0.0))
        loadgen = f"{cpu['loadgen']:.0f}" if "loadgen" in cpu else "-"
        rows.append(
            f"{p['label']:<40} {p['rate']:>9,.0f} {p['unit']:<5}"
            f" {p['p50_ms']:>6.2f} ms {p['p99_ms']:>6.2f} ms {p['extra']['max_ms']:>6.1f} ms"
            f" {sum(p['errors'].values()):>6}   {server:.0f} · {loadgen} · "
            f"{cpu.get('broker', float('nan')):.0f} · {cpu['other']:.0f} ({cpu['irq']:.0f})"
        )
    ratios, aims, disturbed = results["ratios"], results["aims"], results["disturbed"]

    def verdict(ok: bool) -> str:
        return ("met" if ok else "NOT met") + (" - unreliable, see warning" if disturbed else "")

    intake, half = phases["intake"], phases["half_rate"]
    loadgen = (
        "wrk -t1"
        if results["config"]["loadgen"] == "wrk"
        else "an aiohttp client in its own process (fallback: may itself be the limit)"
    )
    rows += [
        "",
        f"intake ÷ ceiling = {ratios['intake_over_ceiling']:.2f}   "
        f"(aim ≥ {AIM_RATIO}: {verdict(aims['intake_over_ceiling_met'])})",
        f"intake ÷ bare    = {ratios['intake_over_bare']:.2f};  CPU per request: intake "
        f"{results['cpu_per_request_us']['intake']['server'] or float('nan'):,.0f} µs ÷ bare "
        f"{results['cpu_per_request_us']['bare']['server'] or float('nan'):,.0f} µs = "
        f"{ratios['intake_cpu_over_bare_cpu'] or float('nan'):.1f}   "
        f"(aim ≤ {AIM_CPU_OVER_BARE:g}: {verdict(aims['intake_cpu_over_bare_cpu_met'])})",
        *_peer_lines(results, verdict),
        *_workers_lines(results),
        f"p99 at half rate = {half['p99_ms']:.2f} ms   "
        f"(aim < {AIM_P99_MS:g} ms: {verdict(aims['p99_at_half_rate_met'])})",
        "",
        f"(1), (2): {loadgen}, closed loop, {results['config']['connections']} connections. "
        "(3): the server column is the publisher, this process. (4): open loop, latency "
        "from each request's scheduled send time (the generator sent "
        f"{half['extra']['send_lateness_p99_ms']:.1f} ms late at p99).",
        f"(1) {intake['extra']['queue_depth_after']:,} messages reached the queue for "
        f"{intake['count']:,} answers; intake's crmsync_publish_seconds averaged "
        f"{intake['extra']['mean_confirm_wait_ms']:.1f} ms (publish to confirm, including "
        "time its event loop spent on other requests).",
        f"{results['environment']['broker']}, {results['environment']['cpus']} CPUs, "
        f"Python {results['environment']['python']}; ran {results['elapsed_s']:.0f} s.",
    ]
    if disturbed:
        rows.append(
            "warning: other processes (or the hypervisor) took CPU during "
            + ", ".join(f"{phases[k]['label'][:3]} {v:.0f} %" for k, v in disturbed.items())
            + " (of a core): the figures are disturbed, run again on a quiet machine."
        )
    rows.append(peak_rss_report(results["peak_rss"]))
    rows.append(broker_report_line(results["broker"]))
    for key in ("ceiling", "half_rate"):
        if key in results["stalls"]:
            rows += stall_report_lines(phases[key]["label"], results["stalls"][key])
    return "\n".join(rows)


def _workers_lines(results: dict[str, Any]) -> list[str]:
    """The report's line on (6): what a second intake process adds."""
    if "workers" not in results["phases"]:
        return ["intake --workers: (6) skipped (--workers 1)"]
    ratios, phase = results["ratios"], results["phases"]["workers"]
    n = phase["extra"]["workers"]
    return [
        f"intake --workers {n} ÷ ceiling = {ratios['workers_over_ceiling'] or float('nan'):.2f}, "
        f"÷ one intake = {ratios['workers_over_intake'] or float('nan'):.2f}; "
        f"{phase['extra']['queue_depth_after']:,} messages reached the queue for "
        f"{phase['count']:,} answers"
    ]


def _peer_lines(results: dict[str, Any], verdict: Any) -> list[str]:
    """The report's lines on (5): intake ÷ FastStream and the CPU per request of both."""
    if "peer" not in results["phases"]:
        return ["intake ÷ FastStream: (5) skipped"]
    ratio = results["ratios"]["intake_over_faststream"]
    met = verdict(results["aims"]["intake_over_faststream_met"])
    cpu = results["cpu_per_request_us"]

    def us(key: str) -> str:
        c = cpu[key]
        if c["server"] is None:
            return "-"
        return f"{c['server']:,.0f} µs ({c['server_and_broker']:,.0f} µs with RabbitMQ)"

    peer = results["phases"]["peer"]
    return [
        f"intake ÷ FastStream = {ratio:.2f}   (aim ≥ {AIM_PEER_RATIO}: {met})",
        f"CPU per request, server process: intake {us('intake')}, FastStream {us('peer')}",
        f"(5) {peer['extra']['queue_depth_after']:,} messages reached the queue for "
        f"{peer['count']:,} answers; the peer's peak RSS "
        f"{peer['extra'].get('peak_rss_mb', float('nan')):.1f} MB",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase (10)")
    parser.add_argument("--warmup", type=float, default=2, help="uncounted seconds before (2)")
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="wrk connections = publishes in flight in the ceiling (32)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "aiohttp"),
        default="wrk",
        help="closed-loop load generator: wrk (default) or a Python fallback",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("CRMSYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--skip-peer", action="store_true", help="skip (5), the FastStream peer")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="(6): crmsync intake --workers N under (1)'s load (2; 1 skips it)",
    )
    parser.add_argument(
        "--own-broker",
        action="store_true",
        help="run every phase against a private RabbitMQ node the bench starts and deletes",
    )
    parser.add_argument(
        "--broker-setting",
        type=broker_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a rabbitmq.conf line for --own-broker's node, e.g. "
        "raft.wal_max_size_bytes=67108864 (repeatable)",
    )
    parser.add_argument(
        "--stall-ms",
        type=float,
        default=AIM_P99_MS,
        help="latency above which (3) and (4) count a stall (20)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "intake.json")
    args = parser.parse_args(argv)
    if args.broker_setting and not args.own_broker:
        parser.error(
            "--broker-setting needs --own-broker (the machine's RabbitMQ is never reconfigured)"
        )
    return args


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    if args.loadgen == "wrk" and not has_wrk():
        print(WRK_MISSING, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `finally` cleans up, as on Ctrl-C
    bench = Bench(args)
    try:
        bench.open_broker()
        results = run(bench)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what the bench started", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    print()
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    series = args.output.with_name(f"{args.output.stem}-series.csv")
    write_series(bench, series)
    print(f"figures written to {args.output}, latency series to {series}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
