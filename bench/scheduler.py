"""Scheduler: 3 replicas, 1,000 jobs due in the same minute, tick → all events published.

Each round starts three scheduler replicas as separate processes (the real
:class:`services.scheduler.service.Scheduler`: tick loop, outbox relay, pruning) on a
fresh set of ``--jobs`` jobs, all ``* * * * *``, sharing one database and one
RabbitMQ namespace. Their clocks are the system clock shifted by one common offset,
so the next minute boundary (the tick) comes ``--lead`` seconds after they start
instead of up to a minute later; everything else (sleeping until the tick, racing for
the rows, the relays publishing with confirms) is real time.

This process consumes the jobs' queue and records when each event arrives. Per round
it prints:

- **claimed**: tick → the ``--jobs`` ``job_runs`` rows committed (polled every 5 ms);
- **published**: tick → the last event delivered to the queue (the figure asked for);
- **count**: events received, distinct event ids, and ``job_runs`` rows, checked
  ``--settle`` seconds after the last arrival, so a late double would show;
- which replica won how many ticks.

Figures go to ``bench/results/scheduler.json``. The bench creates its own database
(dropped at the end) and namespace (deleted), and stops every process it started.

    .venv/bin/python bench/scheduler.py [--rounds 3] [--jobs 1000] [--replicas 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aio_pika
import asyncpg
from _common import (
    RESULTS,
    ROOT,
    PeakRss,
    peak_rss,
    peak_rss_report,
    peak_rss_results,
    stop_process,
)

PG_ADMIN = os.environ.get("CRMSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("CRMSYNC_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


# ------------------------------------------------------------------ replica


class ShiftedClock:
    """The system clock plus a fixed offset (every replica gets the same one)."""

    def __init__(self, offset_s: float) -> None:
        self.offset = timedelta(seconds=offset_s)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def bench_queue() -> Any:
    from shared.topology import QueueSpec

    return QueueSpec("bench.jobs", ("job.bench.#",))


async def replica(args: argparse.Namespace) -> None:
    """One replica: run until stdin closes, then print what it emitted as JSON."""
    from services.scheduler.jobs import Job
    from services.scheduler.metrics import TICKS
    from services.scheduler.service import Scheduler
    from shared.jobs import EnrollmentsExpireParams
    from shared.logging import configure_logging
    from shared.settings import SchedulerSettings

    configure_logging("WARNING", "json", service="scheduler")
    settings = SchedulerSettings(
        _env_file=None,
        database_url=args.dsn,
        amqp_url=AMQP_URL,
        amqp_namespace=args.namespace,
        db_pool_max_size=10,
    )
    queue = bench_queue()
    jobs = [
        Job(
            name=f"bench.{args.prefix}.job{i:04d}",
            cron="* * * * *",
            timezone=ZoneInfo("UTC"),
            enabled=True,
            grace_s=300,
            params=EnrollmentsExpireParams,
            queue=queue,
        )
        for i in range(args.jobs)
    ]
    scheduler = Scheduler(settings, jobs, ShiftedClock(args.offset), name=args.name)
    await scheduler.start()
    await scheduler.broker.wait_ready(30)
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
    await scheduler.stop()
    emitted = sum(
        s.value
        for metric in TICKS.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels["outcome"] == "emitted"
    )
    print(json.dumps({"emitted": int(emitted)}), flush=True)


# ------------------------------------------------------------------- parent


async def create_database() -> str:
    from shared.migrate import migrate

    name = f"crmsync_bench_{secrets.token_hex(4)}"
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    await migrate(dsn)
    return dsn


async def drop_database(dsn: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_namespace(namespace: str) -> None:
    from shared import queues
    from shared.topology import Topology

    topology = Topology(namespace)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for spec in (*queues.ALL, bench_queue()):
            await channel.queue_delete(topology.queue(spec))
            await channel.queue_delete(topology.dead_queue(spec))
        await channel.exchange_delete(topology.events_exchange)
        await channel.exchange_delete(topology.dead_exchange)
    finally:
        await connection.close()


def spawn(args: argparse.Namespace, dsn: str, namespace: str, prefix: str, offset: float, i: int):
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--replica",
            "--dsn", dsn,
            "--namespace", namespace,
            "--prefix", prefix,
            "--offset", repr(offset),
            "--jobs", str(args.jobs),
            "--name", f"bench-scheduler-{i + 1}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # Ctrl-C reaches the bench, which stops them
    )  # fmt: skip


async def one_round(args: argparse.Namespace, dsn: str, namespace: str, n: int) -> dict[str, Any]:
    from shared.topology import Topology

    topology = Topology(namespace)
    connection = await aio_pika.connect(AMQP_URL)
    arrivals: dict[str, float] = {}
    received = 0
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    procs: list[subprocess.Popen[str]] = []
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = (await topology.declare(channel, [bench_queue()]))[topology.queue(bench_queue())]

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            received += 1
            arrivals.setdefault(message.message_id or "", time.time())
            await message.ack()

        await queue.consume(on_message)
        # The fake minute boundary falls --lead seconds from now, for every replica.
        tick_real = time.time() + args.lead
        real = datetime.fromtimestamp(tick_real, UTC)
        tick_fake = (real + timedelta(minutes=2)).replace(second=0, microsecond=0)
        offset = (tick_fake - real).total_seconds()
        prefix = f"r{n}"
        procs = [spawn(args, dsn, namespace, prefix, offset, i) for i in range(args.replicas)]
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if "ready" not in line:
                raise RuntimeError("a replica failed to start")
        if time.time() > tick_real:
            raise RuntimeError("replicas took longer than --lead to start; raise it")
        claimed_at = None
        while time.time() < tick_real + args.timeout:
            count = await pool.fetchval(
                "SELECT count(*) FROM job_runs WHERE job LIKE $1", f"bench.{prefix}.%"
            )
            if claimed_at is None and count >= args.jobs:
                claimed_at = time.time()
            if len(arrivals) >= args.jobs:
                break
            await asyncio.sleep(0.005)
        last_arrival = max(arrivals.values(), default=float("nan"))
        await asyncio.sleep(args.settle)  # a late double would arrive now
        rows = await pool.fetchval(
            "SELECT count(DISTINCT (job, tick)) FROM job_runs WHERE job LIKE $1",
            f"bench.{prefix}.%",
        )
        all_rows = await pool.fetchval(
            "SELECT count(*) FROM job_runs WHERE job LIKE $1", f"bench.{prefix}.%"
        )
    finally:
        # Read while they still run: closing their stdin stops them.
        memory = [peak_rss(f"scheduler-{i + 1} (round {n})", p.pid) for i, p in enumerate(procs)]
        # Closing their stdin stops them all at once; each then says what it emitted.
        outputs = await asyncio.gather(
            *(asyncio.to_thread(proc.communicate, "", 20) for proc in procs),
            return_exceptions=True,
        )
        winners = []
        for proc, output in zip(procs, outputs, strict=True):
            try:
                assert not isinstance(output, BaseException)
                winners.append(json.loads(output[0].strip().splitlines()[-1])["emitted"])
            except (AssertionError, ValueError, IndexError, KeyError):
                winners.append(None)
            stop_process(proc)
        await pool.close()
        await connection.close()
    first = min(arrivals.values(), default=float("nan"))
    return {
        "round": n,
        "claimed_ms": round((claimed_at - tick_real) * 1000, 1) if claimed_at else None,
        "first_event_ms": round((first - tick_real) * 1000, 1),
        "published_ms": round((last_arrival - tick_real) * 1000, 1),
        "events_received": received,
        "distinct_events": len(arrivals),
        "job_runs": all_rows,
        "distinct_job_ticks": rows,
        "emitted_by_replica": winners,
        "exact": received == len(arrivals) == all_rows == rows == args.jobs,
        "memory": memory,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench{secrets.token_hex(4)}."
    dsn = await create_database()
    rounds = []
    memory: list[PeakRss] = []
    try:
        for n in range(1, args.rounds + 1):
            result = await one_round(args, dsn, namespace, n)
            memory += result.pop("memory")
            rounds.append(result)
            print(
                f"round {n}: claimed {result['claimed_ms']} ms, first event "
                f"{result['first_event_ms']} ms, all {args.jobs} published "
                f"{result['published_ms']} ms after the tick; received "
                f"{result['events_received']} ({result['distinct_events']} distinct), "
                f"job_runs {result['job_runs']}; by replica {result['emitted_by_replica']}; "
                f"{'EXACT' if result['exact'] else 'NOT EXACT'}",
                flush=True,
            )
    finally:
        await delete_namespace(namespace)
        await drop_database(dsn)
    published = [r["published_ms"] for r in rounds]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "replicas": args.replicas,
        "jobs": args.jobs,
        "rounds": rounds,
        "published_ms_median": statistics.median(published),
        "published_ms_max": max(published),
        "all_exact": all(r["exact"] for r in rounds),
        "peak_rss": peak_rss_results(memory),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--lead", type=float, default=6.0, help="s from start to the tick")
    parser.add_argument("--settle", type=float, default=3.0, help="s to wait for late doubles")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "scheduler.json")
    # Internal: run as one replica.
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    if args.replica:
        asyncio.run(replica(args))
        return 0
    results = asyncio.run(run(args))
    print(
        f"\n{args.replicas} replicas, {args.jobs} jobs due in the same minute: all events "
        f"published {results['published_ms_median']} ms after the tick (median of "
        f"{args.rounds}; max {results['published_ms_max']} ms); count exact in every round: "
        f"{results['all_exact']}"
    )
    print(peak_rss_report(results["peak_rss"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["all_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
