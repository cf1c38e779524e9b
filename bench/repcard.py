"""W5 RepCard pull from the sandbox, with one and with two syncers.

What runs: ``crmsync sandbox`` with a generated company (``--customers`` 5,000,
3x appointments, 5x status logs, 1x attachments of each kind, 100 users, 10 offices by
default: the issue's sizes), and ``crmsync syncer`` processes (``bench/_stack.py``),
each set of them on a database of its own so every full pull starts empty.

Runs, each triggered as the admin API does (``create_manual_run``) and timed by the run
row (trigger -> ``finished_at``):

1. full pull, 1 syncer, rate limit ``--rate`` requests/s (100 by default);
2. the same with 2 syncers (``CRMSYNC_REPCARD_REPLICAS=2``: each paces at rate / 2);
3. full pull, 1 syncer, the limit lifted (1,000,000 requests/s);
4. after 1 % of the customers and appointments changed in the sandbox, an incremental
   pull on run 1's database, 1 syncer, limited.

Printed (and written to ``bench/results/repcard.json``): wall time ÷ the rate-limit
floor (requests made ÷ rate) for runs 1 and 2 (aim <= 1.15), requests per row pulled,
rows/s with the limit lifted, and incremental ÷ full time (aim < 5 %).

    .venv/bin/python bench/repcard.py [--customers 5000] [--rate 100] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS
from _stack import Service, Stack, bench_main, sandbox_json

UNLIMITED = 1_000_000


def sizes(customers: int) -> dict[str, int]:
    return {
        "users": 100, "offices": 10, "customers": customers, "appointments": 3 * customers,
        "status_logs": 5 * customers, "customer_attachments": customers,
        "appointment_attachments": customers,
    }  # fmt: skip


async def pull(
    pool: Any, params: dict[str, Any], label: str, rate: float, timeout_s: float
) -> dict[str, Any]:
    from datetime import UTC, datetime

    from services.scheduler.history import create_manual_run

    started = time.monotonic()
    run = await create_manual_run(
        pool, job="repcard.sync", params=params, triggered_by="bench", idempotency_key=None,
        now=datetime.now(UTC), source="urn:bench",
    )  # fmt: skip
    while True:
        row = await pool.fetchrow("SELECT * FROM job_runs WHERE id = $1", run.run_id)
        if row["status"] in ("succeeded", "failed"):
            break
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{label}: still {row['status']} after {timeout_s}s")
        await asyncio.sleep(0.2)
    wall = (row["finished_at"] - row["created_at"]).total_seconds()
    totals = row["totals"]
    requests, rows = totals["requests"], totals["recordsFetched"]
    result = {
        "label": label, "status": row["status"], "wall_s": round(wall, 2),
        "requests": requests, "rows": rows, "rate_per_s": rate,
        "floor_s": round(requests / rate, 2),
        "wall_over_floor": round(wall / (requests / rate), 3) if requests else None,
        "requests_per_row": round(requests / rows, 4) if rows else None,
        "rows_per_s": round(rows / wall, 1) if wall else None,
        "inserted": totals["recordsInserted"], "updated": totals["recordsUpdated"],
    }  # fmt: skip
    # Where the time goes: each entity's span and its requests / span vs the rate.
    spans = await pool.fetch(
        "SELECT entity_type, started_at, completed_at, requests FROM repcard_sync_log"
        " WHERE run_id = $1 AND started_at IS NOT NULL ORDER BY started_at",
        run.run_id,
    )
    prev = row["created_at"]
    result["entities"] = []
    for s in spans:
        span = (s["completed_at"] - s["started_at"]).total_seconds()
        gap = (s["started_at"] - prev).total_seconds()
        prev = s["completed_at"]
        rps = round(s["requests"] / span, 1) if span else None
        result["entities"].append({"entity": s["entity_type"], "gap_s": round(gap, 2),
                                   "span_s": round(span, 2), "requests": s["requests"],
                                   "req_per_s": rps})  # fmt: skip
        print(f"    {s['entity_type']}: +{gap:.2f} s gap, {span:.2f} s, {s['requests']} requests"
              f" ({rps}/s)", flush=True)  # fmt: skip
    print(
        f"  {label}: {row['status']} in {wall:.1f} s, {requests:,} requests, {rows:,} rows, "
        f"wall/floor {result['wall_over_floor']}",
        flush=True,
    )
    if row["status"] != "succeeded":
        raise RuntimeError(f"{label} failed: {row['error']}")
    return result


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from shared.db import create_pool

    sandbox = stack.sandbox()
    company = await sandbox_json(
        f"{sandbox.url}/_sandbox/repcard/company", "POST", sizes(args.customers)
    )
    print(f"sandbox company: {company}", flush=True)
    results: dict[str, Any] = {"company": company, "runs": []}

    def syncers(database: str, count: int, rate: float) -> list[Service]:
        env = {
            "CRMSYNC_REPCARD_BASE_URL": f"{sandbox.url}/repcard",
            "CRMSYNC_REPCARD_RATE_REQUESTS": str(rate), "CRMSYNC_REPCARD_RATE_PERIOD_S": "1",
            "CRMSYNC_REPCARD_REPLICAS": str(count),
        }  # fmt: skip
        return [stack.syncer(database, sandbox, **env) for _ in range(count)]

    full = {"incremental": False}
    plan = [("full, 1 syncer, limited", 1, args.rate), ("full, 2 syncers, limited", 2, args.rate),
            ("full, 1 syncer, unlimited", 1, UNLIMITED)]  # fmt: skip
    first_db = ""
    for label, count, rate in plan:
        database = await stack.create_database(f"_{len(results['runs'])}")
        first_db = first_db or database
        # Syncers of one namespace share the queues: only this run's may be up.
        started = syncers(database, count, rate)
        pool = await create_pool(database, min_size=1, max_size=2)
        try:
            results["runs"].append(await pull(pool, full, label, rate, args.timeout))
        finally:
            await pool.close()
            for service in started:
                stack.stop(service)
    syncers(first_db, 1, args.rate)
    # 1 % of the customers and appointments change, then an incremental pull.
    changed = 0
    for entity, base, count in (("customers", 3_000_000, args.customers),
                                ("appointments", 4_000_000, 3 * args.customers)):  # fmt: skip
        for i in range(1, count + 1, 100):
            await sandbox_json(
                f"{sandbox.url}/_sandbox/repcard/{entity}/{base + i}", "PATCH", {"bench": True}
            )
            changed += 1
    pool = await create_pool(first_db, min_size=1, max_size=2)
    try:
        label = f"incremental after {changed} changes, 1 syncer, limited"
        results["incremental"] = await pull(
            pool, {"incremental": True}, label, args.rate, args.timeout
        )
    finally:
        await pool.close()
    results["changed"] = changed
    return results


def report(results: dict[str, Any]) -> str:
    one, two, free = results["runs"]
    inc = results["incremental"]
    return "\n".join(
        [
            f"RepCard pull of {results['company']}",
            f"wall / rate-limit floor, 1 syncer: {one['wall_over_floor']} "
            f"({one['wall_s']} s / {one['floor_s']} s)   aim <= 1.15",
            f"wall / rate-limit floor, 2 syncers: {two['wall_over_floor']} "
            f"({two['wall_s']} s / {two['floor_s']} s)",
            f"requests per row pulled: {one['requests_per_row']} "
            f"({one['requests']:,} requests, {one['rows']:,} rows)",
            f"rows/s with the limit lifted: {free['rows_per_s']:,} ({free['wall_s']} s)",
            f"incremental ({results['changed']} changed, {inc['rows']} rows fetched) / full: "
            f"{inc['wall_s'] / one['wall_s']:.3%}   aim < 5 %",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    parser.add_argument("--output", type=Path, default=RESULTS / "repcard.json")
    args = parser.parse_args()
    return bench_main("repcard", args, run, report)


if __name__ == "__main__":
    sys.exit(main())
