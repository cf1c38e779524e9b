"""Do syncers scale when the work is I/O-bound? 1, 2 and 4 syncer processes, 50 ms providers.

What runs: ``crmsync sandbox``, ``crmsync intake`` and N ``crmsync syncer`` processes
(``bench/_stack.py``) on one crmsync database, one CRM database and one RabbitMQ
namespace, all of the run's own: the syncers compete on the same queues, as replicas
do. Every provider call to the sandbox and every CRM statement is answered
``--latency-ms`` later (``bench/_scaling_work.py``), so that, as in production, a
handler mostly waits.

For each N of ``--syncers`` (more syncers are started; none are stopped between rounds):

(a) **order path**: ``--orders`` signed Shopify ``orders/paid`` webhooks through intake,
    each a Gold order of a new customer: ``syncer.orders`` enrols the customer and
    writes an ``add_membership`` provider action with its outbox event; the relay
    publishes it to ``syncer.membership_actions.shopify``, whose handler reads the
    customer at Shopify and adds the tier tag. Completion = the action's row
    ``completed`` in Postgres; the rate is actions per second over the middle 80 % of
    the completions (``steady``; first push → last completion is printed beside it).
(b) **packages bulk run**: one ``packages.bulk_sync`` run over ``--profiles`` mapped
    profiles (``bench/packages.py``'s data and trigger; mapped by a first run before the
    rounds, without latency), timed by the run row's ``durationS``.

Printed (and written to ``bench/results/scaling.json``): per N the rates, the ratios
N ÷ 1 against the aims (2 ÷ 1 ≥ 1.7, 4 ÷ 1 ≥ 3), and per phase what was near its
ceiling (``bench/_scaling_sampler.py``, ``bench/_scaling_limits.py``: CPU, the slowest
stage and what its handlers wait for, handlers in flight vs prefetch, busy main and
CRM pool connections, provider budget, backlog), as the likely limit.

    .venv/bin/python bench/scaling.py [--orders 1000] [--profiles 3000] [--latency-ms 50]
        [--syncers 1,2,4] [--syncer-env CRMSYNC_X=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import packages
from _common import RESULTS, CpuMeter, idle_percent, pid_of
from _scaling_limits import Limits, diagnose
from _scaling_report import ratios, report
from _scaling_sampler import Sampler
from _scaling_work import (
    SHOPIFY_CALLS_PER_ACTION,
    push,
    rates,
    set_crm_latency,
    set_provider_latency,
    shopify_orders,
    wait_actions,
)
from _stack import PostgresCpu, Service, Stack, _settings_kwargs, bench_main, env_pair

ORDER_QUEUES = ["syncer.orders", "syncer.membership_actions.shopify"]
CHUNK_QUEUE = "syncer.packages.chunks"


def limits_of(env: dict[str, str], syncers: int) -> Limits:
    """The ceilings the syncers' settings give (the product's own derivations)."""
    from services.syncer.isolation import queue_db_connections, queue_prefetch
    from shared import queues
    from shared.settings import SyncerSettings

    settings = SyncerSettings(_env_file=None, **_settings_kwargs(env))
    specs = (queues.ORDERS, queues.MEMBERSHIP_ACTIONS["shopify"], queues.PACKAGES_CHUNKS)
    return Limits(
        syncers=syncers,
        prefetch={spec.name: queue_prefetch(settings, spec) for spec in specs},
        db_pool_max=settings.db_pool_max_size,
        queue_db_connections=queue_db_connections(settings),
        crm_pool_max=settings.crm_pool_max_size,
    )


def _pids(syncers: list[Service], **others: Service) -> dict[str, int]:
    pids = {f"syncer{i + 1}": s.pid for i, s in enumerate(syncers)}
    pids |= {name: s.pid for name, s in others.items()}
    if broker := pid_of("beam.smp"):
        pids["rabbitmq"] = broker
    return pids


def _cpu(meter: CpuMeter, postgres: float) -> dict[str, float]:
    cpu = {**meter.percent, "postgres": postgres}
    cpu["other"] = round(max(0.0, meter.machine - sum(cpu.values())), 1)
    cpu["machine"] = meter.machine
    return cpu


def cpu_ceiling(cpu: dict[str, float], wall_s: float, items: int) -> dict[str, float | None]:
    """CPU ms per item of crmsync's processes (syncers, intake, sandbox, RabbitMQ,
    Postgres; not ``other``), and the items per second this machine's cores would give
    at that cost if crmsync had them to itself."""
    ours = sum(v for k, v in cpu.items() if k not in ("other", "machine"))
    ms = 10 * ours * wall_s / items if items else 0.0  # % of a core x s = 10 ms
    cores = os.cpu_count() or 1
    return {
        "cpu_ms_per_item": round(ms, 2),
        "cpu_ceiling_per_s": round(cores * 1000 / ms, 1) if ms > 0 else None,
    }


def _per_s(in_flight: int, wait_ms: float) -> float | None:
    """Work items per second when ``in_flight`` of them each wait ``wait_ms``."""
    return round(in_flight * 1000 / wait_ms, 1) if wait_ms > 0 else None


async def order_phase(ctx: dict[str, Any], syncers: list[Service], round_no: int) -> dict[str, Any]:
    """(a): push the round's orders, wait for every action; rates, figures, limits."""
    pool, args = ctx["pool"], ctx["args"]
    orders = shopify_orders(round_no, args.orders, ctx["secret"])
    after_id = await pool.fetchval("SELECT coalesce(max(id), 0) FROM provider_actions")
    sampler = Sampler(syncers, pool, ctx["databases"], ctx["namespace"], ORDER_QUEUES)
    meter = CpuMeter(_pids(syncers, intake=ctx["intake"], sandbox=ctx["sandbox"]))
    postgres = PostgresCpu()
    await sampler.start()
    meter.start()
    postgres.start()
    started = datetime.now(UTC)
    pushed = await push(
        f"{ctx['intake'].url}/webhooks/shopify", orders, concurrency=args.push_concurrency
    )
    done = await wait_actions(pool, after_id, args.orders, args.timeout)
    figures = await sampler.stop()
    meter.stop()
    cpu = _cpu(meter, postgres.stop())
    rate = rates(started, done)
    floor = {ORDER_QUEUES[1]: SHOPIFY_CALLS_PER_ACTION * args.latency_ms}
    limits = limits_of(ctx["env"], len(syncers))
    found = diagnose(figures, cpu, limits, floor_ms=floor)
    # Actions in flight (prefetch) over the provider latency an action waits out.
    in_flight = len(syncers) * limits.prefetch[ORDER_QUEUES[1]]
    ceiling = _per_s(in_flight, floor[ORDER_QUEUES[1]])
    result = {"syncers": len(syncers), **pushed, **rate, "figures": figures, "cpu": cpu}
    result |= {"io_ceiling_per_s": ceiling, "limits": found}
    result |= cpu_ceiling(cpu, figures["wall_s"], args.orders)
    print(
        f"  orders    N={len(syncers)}  {rate['steady_per_s'] or 0:>7.1f} actions/s steady, "
        f"{rate['end_to_end_per_s'] or 0:.1f} end to end ({args.orders} actions, pushed in "
        f"{pushed['push_s']:.1f} s)   CPU " + " ".join(f"{k} {v:.0f}" for k, v in cpu.items()),
        flush=True,
    )
    return result


async def packages_phase(ctx: dict[str, Any], syncers: list[Service]) -> dict[str, Any]:
    """(b): one bulk run over every mapped profile; its rate, figures, limits."""
    args = ctx["args"]
    sampler = Sampler(syncers, ctx["pool"], ctx["databases"], ctx["namespace"], [CHUNK_QUEUE])
    await sampler.start()
    label = f"bulk run, {len(syncers)} syncer(s)"
    run = await packages.bulk_run(ctx["pool"], syncers, args.batch_size, label, args.timeout)
    figures = await sampler.stop()
    cpu = {**run["cpu_percent"]}
    cpu["machine"] = round(sum(cpu.values()), 1)
    limits = limits_of(ctx["env"], len(syncers))
    floor = {CHUNK_QUEUE: args.batch_size * args.latency_ms}
    found = diagnose(figures, cpu, limits, floor_ms=floor)
    chunks = int(run["totals"].get("chunks") or 0)
    slots = len(syncers) * limits.prefetch[CHUNK_QUEUE]
    if chunks < slots:
        found.append(
            f"chunks: the run has {chunks} chunks of {args.batch_size} for {slots} prefetch "
            f"slots, so some slots stay idle (more profiles or a smaller batchSize)"
        )
    # A chunk syncs its profiles one after the other, each one CRM read (mapped profiles):
    # CRM reads in flight are the chunks in flight, at most the CRM pool.
    per_syncer = min(limits.prefetch[CHUNK_QUEUE], limits.crm_pool_max)
    reads = min(len(syncers) * per_syncer, max(1, chunks))
    return {
        "syncers": len(syncers),
        "profiles_per_s": run["profiles_per_s"],
        "io_ceiling_per_s": _per_s(reads, args.latency_ms),
        **cpu_ceiling(cpu, run["trigger_to_finished_s"], args.profiles),
        "run": run,
        "figures": figures,
        "cpu": cpu,
        "limits": found,
    }


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from shared.db import create_pool

    started = time.monotonic()
    idle_before = round(idle_percent(), 1)
    database = await stack.create_database()
    crm = await stack.create_database("_crm", migrated=False)
    pool = await create_pool(database, min_size=1, max_size=3)
    rounds: list[dict[str, Any]] = []
    try:
        data = await packages.seed(crm, pool, args.profiles)
        secret = secrets.token_urlsafe(16)
        sandbox = stack.sandbox()
        intake = stack.intake({}, shopify_webhook_secret=secret)
        env = {
            "CRMSYNC_CRM_DATABASE_URL": crm,
            "CRMSYNC_SHOPIFY_RATE_PER_S": f"{args.shopify_rate_per_s:g}",
            "CRMSYNC_COMMERCE7_RATE_PER_S": f"{args.shopify_rate_per_s:g}",
            **dict(args.syncer_env),
        }
        ctx = {
            "args": args, "pool": pool, "secret": secret, "env": env, "intake": intake,
            "sandbox": sandbox, "namespace": stack.namespace,
            "databases": (database.rsplit("/", 1)[1], crm.rsplit("/", 1)[1]),
        }  # fmt: skip
        syncers = [stack.syncer(database, sandbox, **env)]
        print(f"namespace {stack.namespace}  databases {ctx['databases']}", flush=True)
        first = await packages.bulk_run(
            pool, syncers, args.batch_size, "first pass (maps)", args.timeout
        )
        if first["totals"].get("successfulProfiles") != args.profiles:
            raise RuntimeError(f"the first pass mapped {first['totals']}, not every profile")
        await set_provider_latency(sandbox.url, args.latency_ms)
        await set_crm_latency(crm, args.latency_ms)
        for round_no, count in enumerate(args.syncers):
            while len(syncers) < count:
                syncers.append(stack.syncer(database, sandbox, **env))
            print(f"{count} syncer(s), latency {args.latency_ms:g} ms", flush=True)
            orders = await order_phase(ctx, syncers, round_no)
            bulk = await packages_phase(ctx, syncers)
            rounds.append({"syncers": count, "orders": orders, "packages": bulk})
    finally:
        await pool.close()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "orders": args.orders,
            "profiles": args.profiles,
            "latency_ms": args.latency_ms,
            "syncers": args.syncers,
            "batch_size": args.batch_size,
            "shopify_rate_per_s": args.shopify_rate_per_s,
            "push_concurrency": args.push_concurrency,
            "syncer_env": dict(args.syncer_env),
            "namespace": stack.namespace,
        },
        "limits_configured": limits_of(env, 1).__dict__,
        "data": data,
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "idle_percent_before": idle_before,
        },
        "first_pass": first,
        "rounds": rounds,
        "ratios": {
            "orders": ratios(rounds, "orders", "steady_per_s"),
            "packages": ratios(rounds, "packages", "profiles_per_s"),
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _counts(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",")]
    if not counts or counts != sorted(set(counts)) or counts[0] < 1:
        raise argparse.ArgumentTypeError("expected increasing counts, e.g. 1,2,4")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders per round (1000)")
    parser.add_argument("--profiles", type=int, default=3000, help="profiles (3000)")
    parser.add_argument("--latency-ms", type=float, default=50, help="provider and CRM (50)")
    parser.add_argument("--syncers", type=_counts, default=[1, 2, 4], help="rounds (1,2,4)")
    parser.add_argument("--batch-size", type=int, default=20, help="bulk run batchSize (20)")
    parser.add_argument(
        "--shopify-rate-per-s",
        type=float,
        default=1000,
        help="CRMSYNC_SHOPIFY_RATE_PER_S (and Commerce7's) of each syncer: 1000, so the "
        "budget is not what is measured (the product's default is 2)",
    )
    parser.add_argument("--push-concurrency", type=int, default=32, help="webhooks in flight")
    parser.add_argument(
        "--syncer-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="CRMSYNC_X=VALUE",
        help="a setting for every syncer, e.g. CRMSYNC_PREFETCH_COUNT=64 (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="s to wait for each phase")
    parser.add_argument("--output", type=Path, default=RESULTS / "scaling.json")
    return parser.parse_args(argv)


def main() -> int:
    return bench_main("scaling", parse_args(), run, report)


if __name__ == "__main__":
    sys.exit(main())
