"""A bulk refund of 1,000 contacts in one ``syncer.credits`` notification: the
per-contact loop against the set-based path (``services/syncer/credits_bulk.py``).

What runs: no broker and no crmsync process; the bench calls the handler's code in
its own process on two databases of the run's own (``bench_<hex>_loop`` and
``bench_<hex>_set``, dropped after), seeded alike: ``--contacts`` contacts (student id
and email) with a balance at app version 1. Each of ``--runs`` refunds names every
contact (``--new`` more that Postgres does not know yet, in the first run) and sets
``shared_mock_credits`` and ``sj_credits`` at the next version, ``reason
bulk_refund``:

- **loop**: the handler before issue 11's batch work: claim, then ``apply_change``
  (``resolve_contact`` and four writes) per contact, in one transaction;
- **set**: ``handle_credits`` as the syncer runs it (claim, ``LOCK_SQL``,
  ``APPLY_SQL`` in a savepoint).

A run is timed from the acquire of the connection to the commit (``time.perf_counter``)
and its statements are counted on the connection (asyncpg's query logger, after a
warm-up notification on the same connection so asyncpg's one-off type look-ups are
not counted). Printed (and written to ``bench/results/credits_bulk.json``): per path
the seconds of each run, the median, and statements per refund; then whether the two
databases ended alike (contacts, balances, audit rows and outbox rows).

    .venv/bin/python bench/credits_bulk.py [--contacts 1000] [--new 0] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
from _common import RESULTS
from _stack import Stack, bench_main

from services.syncer.consumers.credits import apply_change, handle_credits
from shared.db import claim_message, create_pool
from shared.events import CloudEvent
from shared.messages.credits import CREDITS_CHANGED, MAX_BATCH, CreditsNotification
from shared.queues import CREDITS


def refund(key: str, version: int, contacts: range) -> CloudEvent:
    """A ``bulk_refund`` notification for students ``st-<i>``, ``i`` in ``contacts``."""
    items = [
        {
            "contact": {"studentId": f"st-{i}", "email": f"s{i}@bench.test"},
            "credits": {"shared_mock_credits": i % 9, "sj_credits": version},
            "version": version,
        }
        for i in contacts
    ]
    note = CreditsNotification.model_validate(
        {
            "idempotencyKey": key,
            "reason": "bulk_refund",
            "occurredAt": "2026-11-21T10:00:00Z",
            "items": items,
        }
    )
    return CloudEvent.create(id=f"bench:{key}", type=CREDITS_CHANGED, source="urn:bench", data=note)


class _OneConnection:
    """The handler's pool: one given connection, so its statements can be counted."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def acquire(self) -> Any:
        conn = self.conn

        class _Acquire:
            async def __aenter__(self) -> asyncpg.Connection:
                return conn

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Acquire()


async def _loop(conn: asyncpg.Connection, event: CloudEvent) -> None:
    note = event.data_as(CreditsNotification)
    async with conn.transaction():
        if await claim_message(conn, CREDITS.name, event.id):
            for change in note.changes():
                await apply_change(conn, change, note, event)


async def _set_based(conn: asyncpg.Connection, event: CloudEvent) -> None:
    await handle_credits(event, None, SimpleNamespace(pool=_OneConnection(conn)))  # type: ignore[arg-type]


async def _seed(dsn: str, contacts: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO contacts (student_id, email)
            SELECT 'st-' || i, 's' || i || '@bench.test' FROM generate_series(0, $1 - 1) AS i;
            INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason,
                                         occurred_at)
            SELECT id, 'sj_credits', 1, 1, 'admin_refund', now() FROM contacts;
            """.replace("$1", str(int(contacts)))
        )
    finally:
        await conn.close()


async def _end_state(pool: Any) -> list[Any]:
    return [
        await pool.fetchval(q)
        for q in (
            "SELECT count(*) FROM contacts",
            "SELECT sum(change_version) FROM contacts",
            "SELECT sum(balance * version) FROM contact_credits",
            "SELECT count(*) FROM audit_log",
            "SELECT count(*) FROM outbox",
        )
    ]


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"contacts": args.contacts, "new": args.new, "runs": args.runs}
    ends = {}
    for name, path in (("loop", _loop), ("set", _set_based)):
        dsn = await stack.create_database(f"_{name}")
        await _seed(dsn, args.contacts)
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await path(conn, refund("warm-up", 1, range(2)))
                times, statements = [], []
                for n in range(args.runs):
                    known = args.contacts + (args.new if n == 0 else 0)
                    event = refund(f"refund-{n}", n + 2, range(known))
                    count: list[str] = []

                    def log(record: Any, count: list[str] = count) -> None:
                        count.append(record.query)

                    conn.add_query_logger(log)
                    start = time.perf_counter()
                    await path(conn, event)
                    times.append(time.perf_counter() - start)
                    await asyncio.sleep(0)  # the logger's calls are scheduled, not direct
                    conn.remove_query_logger(log)
                    statements.append(len(count))
            ends[name] = await _end_state(pool)
        finally:
            await pool.close()
        results[name] = {
            "seconds": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3),
            "statements": statements,
        }
    results["same_end_state"] = ends["loop"] == ends["set"]
    return results


def report(r: dict[str, Any]) -> str:
    lines = [f"bulk refund of {r['contacts']} contacts (+{r['new']} new in the first run)"]
    for name in ("loop", "set"):
        p = r[name]
        lines.append(
            f"  {name:<4} median {p['median_s']:.3f} s  runs {p['seconds']}"
            f"  statements per refund {p['statements']}"
        )
    ratio = r["loop"]["median_s"] / r["set"]["median_s"] if r["set"]["median_s"] else 0.0
    lines.append(f"  loop / set: {ratio:.1f}x   same end state: {r['same_end_state']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1000, help="known contacts refunded")
    parser.add_argument("--new", type=int, default=0, help="unknown contacts in the first run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "credits_bulk.json")
    args = parser.parse_args()
    if args.contacts + args.new > MAX_BATCH or args.contacts < 1 or args.new < 0:
        parser.error(f"a notification names 1 to {MAX_BATCH} contacts (--contacts + --new)")
    return bench_main("credits_bulk", args, run, report)


if __name__ == "__main__":
    sys.exit(main())
