"""HubSpot batch sync of 100,000 contacts against a sandbox enforcing 190 requests / 10 s.

What runs: ``crmsync sandbox`` and one ``crmsync syncer`` as real processes (see
``bench/_stack.py``) on a database and RabbitMQ namespace of the run's own. The bench
seeds ``--contacts`` contacts with SQL, as the credits handler leaves them (pending for
HubSpot: ``hubspot_synced_version < change_version``, two credit balances and an audit
log entry each, no HubSpot id yet), sets the sandbox's HubSpot limit to 190 requests
per rolling 10 s (``TEN_SECONDLY_ROLLING``, answered with 429 and ``Retry-After`` past
it), and triggers one ``hubspot.batch_sync`` run with ``{"objects": ["contacts"]}``
the way the admin API does (``create_manual_run``: the run row and its event in one
transaction; the syncer's outbox relay publishes it).

The floor: ``ceil(contacts / 100)`` batch calls (100 inputs per call) at 19 calls/s
(1,000 calls = 52.6 s for 100,000 contacts). Printed (and written to
``bench/results/hubspot_sync.json``): wall time (the run row's ``started_at`` →
``finished_at``, and trigger → ``finished_at``), wall ÷ floor (aim ≤ 1.15), the
calls the sandbox counted and how many it answered 429 (aim < 1 %), the run's
totals, and from the sandbox's request log: the most calls in any 10 s window, the
steady call rate, the wait before the first call and after the last one, and
gaps between calls.

    .venv/bin/python bench/hubspot_sync.py [--contacts 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from _common import RESULTS, CpuMeter, idle_percent, pid_of
from _stack import PostgresCpu, Stack, bench_main, sandbox_json

LIMIT_REQUESTS, LIMIT_WINDOW_S = 190, 10.0
LIMIT = {"requests": LIMIT_REQUESTS, "window_s": LIMIT_WINDOW_S, "policy": "TEN_SECONDLY_ROLLING"}
BATCH = 100
AIM_RATIO = 1.15
AIM_429_SHARE = 0.01


async def seed(pool: Any, contacts: int) -> None:
    """Contacts as the credits handler leaves them: pending for HubSpot, never sent."""
    await pool.execute(
        """
        INSERT INTO contacts (student_id, email, first_name, last_name)
        SELECT 'st-' || i, 'student' || i || '@bench.test', 'First' || i, 'Last' || i
        FROM generate_series(1, $1) AS i
        """,
        contacts,
    )
    await pool.execute(
        """
        INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason, occurred_at)
        SELECT id, t.credit_type, (id % 7)::int, 1, 'admin_refund', now()
        FROM contacts CROSS JOIN unnest(ARRAY['sj_credits', 'cs_credits']) AS t(credit_type)
        """
    )
    await pool.execute(
        "INSERT INTO audit_log (entity, entity_id, action, entity_version)"
        " SELECT 'contact', id, 'credits_changed', change_version FROM contacts"
    )
    await pool.execute("ANALYZE contacts; ANALYZE contact_credits; ANALYZE audit_log")


def _timeline(
    requests: list[dict[str, Any]], started: datetime, finished: datetime
) -> dict[str, Any]:
    """What the sandbox's request log says about pacing (limited endpoints only)."""
    limited = [r for r in requests if "/crm/v3/objects/" in r["path"]]
    times = sorted(datetime.fromisoformat(r["at"]).timestamp() for r in limited)
    if not times:
        return {}
    most, left = 0, 0
    for right, t in enumerate(times):
        while times[left] <= t - LIMIT_WINDOW_S:
            left += 1
        most = max(most, right - left + 1)
    gaps = [b - a for a, b in pairwise(times)]
    span = times[-1] - times[0]
    return {
        "calls": len(times),
        "first_call_after_start_s": round(times[0] - started.timestamp(), 3),
        "finish_after_last_call_s": round(finished.timestamp() - times[-1], 3),
        "first_to_last_call_s": round(span, 3),
        "steady_rate_per_s": round((len(times) - 1) / span, 2) if span > 0 else None,
        "max_calls_in_any_10s": most,
        "gaps_over_200ms": sum(1 for g in gaps if g > 0.2),
        "longest_gap_s": round(max(gaps, default=0.0), 3),
        "statuses": dict(Counter(str(r["status"]) for r in limited)),
    }


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from services.scheduler.history import create_manual_run
    from shared.db import create_pool

    started = time.monotonic()
    idle_before = round(idle_percent(), 1)
    database = await stack.create_database()
    pool = await create_pool(database, min_size=1, max_size=2)
    try:
        t = time.monotonic()
        await seed(pool, args.contacts)
        print(f"seeded {args.contacts:,} contacts in {time.monotonic() - t:.1f} s", flush=True)
        sandbox = stack.sandbox()
        await sandbox_json(f"{sandbox.url}/_sandbox/hubspot/rate-limit", "POST", LIMIT)
        syncer = stack.syncer(database, sandbox)
        print(
            f"namespace {stack.namespace}  database {database.rsplit('/', 1)[1]}  "
            f"syncer :{syncer.port}  sandbox :{sandbox.port}  limit {LIMIT}",
            flush=True,
        )
        pids = {"syncer": syncer.pid, "sandbox": sandbox.pid}
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
                job="hubspot.batch_sync",
                params={"objects": ["contacts"]},
                triggered_by="bench",
                idempotency_key=None,
                now=triggered,
                source="urn:crmsync:bench",
            )
        ).run_id
        print(f"run {run_id} triggered; waiting for it to finish ...", flush=True)
        row = await _follow(pool, run_id, args.timeout)
        meter.stop()
        pg_cpu = postgres.stop()
    finally:
        await pool.close()

    stats = await sandbox_json(f"{sandbox.url}/_sandbox/hubspot/stats")
    log = await sandbox_json(f"{sandbox.url}/_sandbox/requests?provider=hubspot")
    calls = int(sum(stats["calls"].values()))
    rate_limited = int(stats["rate_limited"])
    needed = math.ceil(args.contacts / BATCH)
    floor_s = needed / (LIMIT_REQUESTS / LIMIT_WINDOW_S)
    wall_s = (row["finished_at"] - row["started_at"]).total_seconds()
    from_trigger_s = (row["finished_at"] - triggered).total_seconds()
    totals = row["totals"]
    cpu = {**meter.percent, "postgres": pg_cpu}
    cpu["other"] = round(max(0.0, meter.machine - sum(cpu.values())), 1)
    ratio = wall_s / floor_s
    share = rate_limited / calls if calls else 0.0
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "contacts": args.contacts,
            "limit": LIMIT,
            "namespace": stack.namespace,
            "syncer_env": "product defaults (CRMSYNC_HUBSPOT_RATE_PER_10S=190, 1 replica)",
            "sandbox": "crmsync sandbox",
        },
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "idle_percent_before": idle_before,
        },
        "run": {
            "id": run_id,
            "status": row["status"],
            "attempts": row["attempts"],
            "error": row["error"],
            "totals": totals,
            "queued_s": round((row["started_at"] - triggered).total_seconds(), 3),
            "wall_s": round(wall_s, 2),
            "trigger_to_finished_s": round(from_trigger_s, 2),
        },
        "floor": {"batch_calls": needed, "seconds": round(floor_s, 2)},
        "ratio": round(ratio, 3),
        "ratio_from_trigger": round(from_trigger_s / floor_s, 3),
        "hubspot": {
            "calls": calls,
            "calls_by_endpoint": stats["calls"],
            "rate_limited": rate_limited,
            "rate_limited_share": round(share, 4),
            "timeline": _timeline(log["requests"], row["started_at"], row["finished_at"]),
        },
        "cpu_percent": cpu,
        "aims": {
            "ratio_at_most": AIM_RATIO,
            "ratio_met": ratio <= AIM_RATIO,
            "rate_limited_share_under": AIM_429_SHARE,
            "rate_limited_met": share < AIM_429_SHARE,
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }


async def _follow(pool: Any, run_id: int, timeout_s: float) -> Any:
    """Poll the run row until it has finished; print its progress every 10 s."""
    deadline = time.monotonic() + timeout_s
    next_print = time.monotonic() + 10
    while True:
        row = await pool.fetchrow("SELECT * FROM job_runs WHERE id = $1", run_id)
        if row["status"] in ("succeeded", "failed"):
            return row
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} not finished after {timeout_s:.0f} s: {dict(row)}")
        if time.monotonic() >= next_print:
            done = (row["totals"] or {}).get("contacts", {})
            print(f"  {row['status']}: contacts {done}", flush=True)
            next_print += 10
        await asyncio.sleep(0.1)


def report(r: dict[str, Any]) -> str:
    run, h, tl = r["run"], r["hubspot"], r["hubspot"]["timeline"]
    c = run["totals"].get("contacts", {})
    cpu = "  ".join(f"{k} {v:.0f}" for k, v in r["cpu_percent"].items())

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return "\n".join(
        [
            f"HubSpot batch sync of {r['config']['contacts']:,} contacts, sandbox limit "
            f"{LIMIT_REQUESTS} per {LIMIT_WINDOW_S:g} s rolling, 1 syncer, sandbox "
            f"{r['config']['sandbox']}",
            f"  run {run['id']} {run['status']} (attempts {run['attempts']}): created "
            f"{c.get('created')}, updated {c.get('updated')}, failed {c.get('failed')}; "
            f"errors {len(run['totals'].get('errors', []))}",
            f"  wall (started → finished)   {run['wall_s']:.2f} s   "
            f"(trigger → finished {run['trigger_to_finished_s']:.2f} s, queued "
            f"{run['queued_s']:.2f} s)",
            f"  floor                       {r['floor']['seconds']:.2f} s "
            f"({r['floor']['batch_calls']:,} batch calls at 19/s)",
            f"  wall ÷ floor                {r['ratio']:.3f}   (from trigger "
            f"{r['ratio_from_trigger']:.3f}; aim ≤ {AIM_RATIO}: "
            f"{verdict(r['aims']['ratio_met'])})",
            f"  HubSpot calls {h['calls']:,}, answered 429: {h['rate_limited']} = "
            f"{100 * h['rate_limited_share']:.2f} % (aim < 1 %: "
            f"{verdict(r['aims']['rate_limited_met'])})",
            f"  pacing: first call {tl.get('first_call_after_start_s')} s after start, "
            f"{tl.get('steady_rate_per_s')} calls/s first → last "
            f"({tl.get('first_to_last_call_s')} s), at most {tl.get('max_calls_in_any_10s')} "
            f"in any 10 s, {tl.get('gaps_over_200ms')} gaps > 200 ms (longest "
            f"{tl.get('longest_gap_s')} s), finished {tl.get('finish_after_last_call_s')} s "
            "after the last call",
            f"  CPU, % of a core: {cpu}",
            f"  idle before the run {r['environment']['idle_percent_before']:.0f} %; "
            f"ran {r['elapsed_s']:.0f} s",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts (100000)")
    parser.add_argument("--timeout", type=float, default=600, help="s to wait for the run")
    parser.add_argument("--output", type=Path, default=RESULTS / "hubspot_sync.json")
    return parser.parse_args(argv)


def main() -> int:
    return bench_main("hubspot-sync", parse_args(), run, report)


if __name__ == "__main__":
    sys.exit(main())
