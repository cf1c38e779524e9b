"""W1 bulk package sync over 10,000 mapped profiles, with one and with two syncers.

What runs: one, then two ``crmsync syncer`` processes (see ``bench/_stack.py``) on a
crmsync database and a CRM database of the run's own (``bench_<hex>`` and
``bench_<hex>_crm``, the sandbox CRM's tables and views from
``services.sandbox.crmdb``), and a RabbitMQ namespace of the run's own.

The data: ``--profiles`` CRM customers, each with 1 to 3 packages (hours or uses), and
as many app profiles with the customers' emails. A first ``packages.bulk_sync`` run
(one syncer, ``batchSize`` 20) maps every profile (``crm_mappings.status =
'matched'``, by email) and copies its packages; it is reported but not what the aim is
about. Then the timed runs, each over every profile, all of them mapped: for one
syncer and then two, ``batchSize`` 20 (the default) and 100. Every run is triggered
as the admin API does (``create_manual_run``: the run row and its event in one
transaction), split into chunk messages by whichever syncer takes the event, and
shared by every syncer; it is timed by the run row's own ``durationS`` (run started →
the last chunk's commit) and ``totals``, and from trigger to ``finished_at``.

Printed (and written to ``bench/results/packages.json``): profiles per second of each
run, two ÷ one syncer for each batch size, the aim (≥ 500 profiles/s with one syncer
and the default batch size) and the speed-up over the system this replaces (50
profiles in 45 s, batches of 20 with a 500 ms pause: 1.1 profiles/s).

    .venv/bin/python bench/packages.py [--profiles 10000] [--batch-sizes 20,100] [--prefetch 32]
        [--syncer-env CRMSYNC_X=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from _common import RESULTS, CpuMeter, idle_percent, pid_of
from _stack import PostgresCpu, Service, Stack, bench_main, env_pair

OLD_SYSTEM_PER_S = 50 / 45  # 50 profiles in 45 s
AIM_PER_S = 500.0


async def seed(crm_dsn: str, pool: Any, profiles: int) -> dict[str, int]:
    """``profiles`` CRM customers with 1-3 packages each, and a profile per customer."""
    from services.sandbox.crmdb import seed_crm_database

    await seed_crm_database(crm_dsn, customers=0)  # the tables and views, empty
    crm = await asyncpg.connect(crm_dsn)
    try:
        await crm.execute(
            """
            INSERT INTO bayclub.clients (given_name, family_name, email_address)
            SELECT 'First' || i, 'Last' || i, 'member' || i || '@bench.test'
            FROM generate_series(1, $1) AS i
            """,
            profiles,
        )
        await crm.execute(
            """
            INSERT INTO bayclub.client_packages (client_no, product_code, product_name,
                valid_until, hours_purchased, hours_consumed, sessions_purchased,
                sessions_consumed)
            SELECT c.client_no,
                   CASE WHEN k = 1 THEN 'BAY10' WHEN k = 2 THEN 'LESSON5' ELSE 'SIM20' END,
                   CASE WHEN k = 1 THEN '10 Bay Hours' WHEN k = 2 THEN '5 Lessons'
                        ELSE '20 Simulator Sessions' END,
                   current_date + 30 * k,
                   CASE WHEN k = 1 THEN 10 END, CASE WHEN k = 1 THEN c.client_no % 10 END,
                   CASE WHEN k > 1 THEN 5 * k END, CASE WHEN k > 1 THEN c.client_no % 5 END
            FROM bayclub.clients c CROSS JOIN generate_series(1, 1 + c.client_no % 3) AS k
            """
        )
        await crm.execute("ANALYZE bayclub.clients; ANALYZE bayclub.client_packages")
        packages = await crm.fetchval("SELECT count(*) FROM crm_packages")
    finally:
        await crm.close()
    await pool.execute(
        """
        INSERT INTO profiles (profile_id, email, first_name, last_name)
        SELECT 'profile-' || i, 'member' || i || '@bench.test', 'First' || i, 'Last' || i
        FROM generate_series(1, $1) AS i
        """,
        profiles,
    )
    return {"profiles": profiles, "crm_packages": int(packages)}


async def bulk_run(
    pool: Any, syncers: list[Service], batch_size: int, label: str, timeout_s: float
) -> dict[str, Any]:
    """Trigger one ``packages.bulk_sync`` run and wait for it; its figures."""
    from services.scheduler.history import create_manual_run

    pids = {f"syncer{i + 1}": s.pid for i, s in enumerate(syncers)}
    broker = pid_of("beam.smp")
    if broker:
        pids["rabbitmq"] = broker
    meter, postgres = CpuMeter(pids), PostgresCpu()
    meter.start()
    postgres.start()
    triggered = datetime.now(UTC)
    run_id = (
        await create_manual_run(
            pool,
            job="packages.bulk_sync",
            params={"batchSize": batch_size},
            triggered_by="bench",
            idempotency_key=None,
            now=triggered,
            source="urn:crmsync:bench",
        )
    ).run_id
    deadline = time.monotonic() + timeout_s
    while True:
        row = await pool.fetchrow("SELECT * FROM job_runs WHERE id = $1", run_id)
        if row["status"] in ("succeeded", "failed"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} not finished after {timeout_s:.0f} s: {dict(row)}")
        if any(not s.alive() for s in syncers):
            raise RuntimeError("a syncer died during the run")
        await asyncio.sleep(0.05)
    meter.stop()
    cpu = {**meter.percent, "postgres": postgres.stop()}
    cpu["other"] = round(max(0.0, meter.machine - sum(cpu.values())), 1)
    totals = row["totals"]
    duration = float(totals.get("durationS") or 0.0)
    result = {
        "label": label,
        "run_id": run_id,
        "syncers": len(syncers),
        "batch_size": batch_size,
        "status": row["status"],
        "error": row["error"],
        "totals": totals,
        "duration_s": duration,
        "trigger_to_finished_s": round((row["finished_at"] - triggered).total_seconds(), 3),
        "profiles_per_s": round(totals["totalProfiles"] / duration, 1) if duration else None,
        "cpu_percent": cpu,
    }
    print(
        f"  {label:<34} {result['profiles_per_s'] or 0:>8,.1f} profiles/s   "
        f"durationS {duration:6.2f}   succeeded {totals.get('successfulProfiles')}/"
        f"{totals.get('totalProfiles')}, failed {totals.get('failedProfiles')}, unmatched "
        f"{totals.get('unmatchedProfiles')}, packages {totals.get('totalPackages')}   CPU "
        + " ".join(f"{k} {v:.0f}" for k, v in cpu.items()),
        flush=True,
    )
    return result


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from shared.db import create_pool

    started = time.monotonic()
    idle_before = round(idle_percent(), 1)
    database = await stack.create_database()
    crm = await stack.create_database("_crm", migrated=False)
    pool = await create_pool(database, min_size=1, max_size=2)
    runs: list[dict[str, Any]] = []
    try:
        t = time.monotonic()
        data = await seed(crm, pool, args.profiles)
        print(
            f"seeded {data['profiles']:,} profiles and CRM customers, {data['crm_packages']:,} "
            f"CRM packages in {time.monotonic() - t:.1f} s",
            flush=True,
        )
        env = {
            "CRMSYNC_CRM_DATABASE_URL": crm,
            "CRMSYNC_PREFETCH_COUNT": str(args.prefetch),
            **dict(args.syncer_env),
        }
        syncers = [stack.syncer(database, None, **env)]  # W1 calls no provider
        print(
            f"namespace {stack.namespace}  databases {database.rsplit('/', 1)[1]}, "
            f"{crm.rsplit('/', 1)[1]}  prefetch {args.prefetch}",
            flush=True,
        )
        first = await bulk_run(pool, syncers, 20, "first pass (maps), 1 syncer, 20", args.timeout)
        matched = await pool.fetchval("SELECT count(*) FROM crm_mappings WHERE status = 'matched'")
        print(f"  mapped profiles: {matched:,} of {args.profiles:,}", flush=True)
        if matched != args.profiles:
            raise RuntimeError(f"only {matched} of {args.profiles} profiles were mapped")
        for count in (1, 2):
            while len(syncers) < count:
                syncers.append(stack.syncer(database, None, **env))
            for batch in args.batch_sizes:
                label = f"{count} syncer{'s' if count > 1 else ''}, batchSize {batch}"
                runs.append(await bulk_run(pool, syncers, batch, label, args.timeout))
    finally:
        await pool.close()

    def rate(syncers: int, batch: int) -> float | None:
        found = [r for r in runs if r["syncers"] == syncers and r["batch_size"] == batch]
        return found[0]["profiles_per_s"] if found else None

    ratios = {}
    for batch in args.batch_sizes:
        one, two = rate(1, batch), rate(2, batch)
        ratios[str(batch)] = round(two / one, 2) if one and two else None
    default_one = rate(1, 20)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "profiles": args.profiles,
            "batch_sizes": args.batch_sizes,
            "prefetch": args.prefetch,
            "namespace": stack.namespace,
            "syncer_env": dict(args.syncer_env),
        },
        "data": data,
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "idle_percent_before": idle_before,
        },
        "first_pass": first,
        "runs": runs,
        "two_over_one": ratios,
        "old_system_profiles_per_s": round(OLD_SYSTEM_PER_S, 2),
        "speedup_over_old_system": round(default_one / OLD_SYSTEM_PER_S) if default_one else None,
        "aim": {
            "profiles_per_s_one_syncer_at_least": AIM_PER_S,
            "met": bool(default_one and default_one >= AIM_PER_S),
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def report(r: dict[str, Any]) -> str:
    rows = [
        f"packages.bulk_sync over {r['config']['profiles']:,} mapped profiles "
        f"({r['data']['crm_packages']:,} CRM packages), prefetch {r['config']['prefetch']}",
        f"  {'run':<34} {'profiles/s':>10} {'durationS':>10} {'trigger→done':>13}",
    ]
    for run in [r["first_pass"], *r["runs"]]:
        rows.append(
            f"  {run['label']:<34} {run['profiles_per_s'] or 0:>10,.1f} "
            f"{run['duration_s']:>9.2f}s {run['trigger_to_finished_s']:>12.2f}s"
        )
    rows.append(
        "  two ÷ one syncer: "
        + ", ".join(f"batchSize {b}: {v}" for b, v in r["two_over_one"].items())
    )
    one = next(x for x in r["runs"] if x["syncers"] == 1 and x["batch_size"] == 20)
    rows += [
        f"  aim ≥ {AIM_PER_S:g} profiles/s with one syncer (batchSize 20): "
        f"{'met' if r['aim']['met'] else 'NOT met'} ({one['profiles_per_s']:,.1f})",
        f"  the old system: {r['old_system_profiles_per_s']} profiles/s; this is "
        f"{r['speedup_over_old_system']:,} times that",
        f"  idle before the run {r['environment']['idle_percent_before']:.0f} %; "
        f"ran {r['elapsed_s']:.0f} s",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=10_000, help="profiles (10000)")
    parser.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[20, 100],
        help="batchSize of the timed runs, comma-separated (20,100)",
    )
    parser.add_argument(
        "--prefetch", type=int, default=32, help="CRMSYNC_PREFETCH_COUNT of each syncer (32)"
    )
    parser.add_argument(
        "--syncer-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="CRMSYNC_X=VALUE",
        help="a setting for every syncer, e.g. CRMSYNC_CRM_POOL_MAX_SIZE=10 (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="s to wait for each run")
    parser.add_argument("--output", type=Path, default=RESULTS / "packages.json")
    args = parser.parse_args(argv)
    if 20 not in args.batch_sizes:
        parser.error("--batch-sizes must include 20 (the default batch size the aim is about)")
    return args


def main() -> int:
    return bench_main("packages", parse_args(), run, report)


if __name__ == "__main__":
    sys.exit(main())
