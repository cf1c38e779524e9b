"""Credit notifications at a steady rate through intake: request → Postgres commit.

What runs: ``crmsync sandbox``, ``crmsync intake`` and one ``crmsync syncer`` as real
processes (see ``bench/_stack.py``) on a database and RabbitMQ namespace of the run's
own, the syncer's HubSpot pointed at the sandbox (no rate limit set).

The load: a separate process sends ``POST /v1/events/credits`` open loop at ``--rate``
per second (wrk2-style: each request leaves at its scheduled time whatever the earlier
ones are doing, so a stall counts against crmsync instead of lowering the rate).
Notification ``n`` is for student ``n mod --students`` (``st-<i>``, with an email),
sets ``sj_credits`` and ``cs_credits``, and carries ``version = n + 1``: versions grow
per student and each identifies its notification. The first ``--warmup`` seconds
(by default one pass over the students, which creates them in Postgres and HubSpot)
are not counted in the latencies; the ``--duration`` seconds after them are.

The commit time: the bench installs, in its own database, a deferred constraint
trigger on ``contact_credits``; it runs as the writing transaction commits, after all
its statements, and records ``clock_timestamp()`` with the row's version in an
unlogged table ``bench_commits``. That is the commit less the flush of its commit
record (well under a millisecond here); the table is read after the run. Not LISTEN /
NOTIFY: a notifying transaction holds a database-wide lock until its commit is
flushed, which would serialise the commits being measured (``migrations/0007``).
Latency is from the request's *scheduled* send time to that moment.

Printed (and written to ``bench/results/credits.json``): request → commit p50, p90,
p99, max; the achieved rate and errors; intake's 202 latency p50 and p99; the CPU each
process used; then, once every HubSpot push has drained, HubSpot batch calls per
notification, and checks that Postgres has each student's newest balance and HubSpot
has exactly the students posted, with the same balances.

    .venv/bin/python bench/credits.py [--rate 500] [--duration 20] [--students 2000]
        [--warmup S] [--syncer-env CRMSYNC_X=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _pgstat
import aiohttp
import asyncpg
from _common import RESULTS, CpuMeter, idle_percent, percentile, pid_of
from _loadgen import RawClient
from _stack import PostgresCpu, Stack, bench_main, env_pair, sandbox_json

SPAWN = multiprocessing.get_context("spawn")
KEY_NAME = "bench"
AIM_P99_MS = 50.0
AIM_RATE = 500.0
# CPU (% of a core) other processes may use meanwhile before we call the run disturbed.
OTHER_CPU_WARN = 15.0

# Installed on the bench's own database only (never in migrations). A deferred
# constraint trigger runs when its transaction commits, after all its statements: it
# records the moment, so this is the commit less the commit record's WAL flush (well
# under a millisecond here). Not NOTIFY: a transaction that notifies takes a
# database-wide lock until its commit is flushed, which serialises commits
# (migrations/0007 removed crmsync's own NOTIFY for that reason).
TRIGGER_SQL = """
CREATE UNLOGGED TABLE bench_commits (version bigint PRIMARY KEY, at timestamptz NOT NULL);
CREATE FUNCTION bench_commit_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_commits VALUES (NEW.version, clock_timestamp()) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER bench_commit_time AFTER INSERT OR UPDATE ON contact_credits
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_commit_time();
"""


def notification(n: int, students: int) -> dict[str, Any]:
    """The ``n``-th notification (0-based): student ``n mod students``, version ``n + 1``,
    happened now (the event's time, from which the syncer measures its queue lag)."""
    s = n % students
    return {
        "idempotencyKey": f"bench-{n}",
        "reason": "booking_created",
        "occurredAt": datetime.now(UTC).isoformat(),
        "contact": {"studentId": f"st-{s}", "email": f"student{s}@bench.test"},
        "credits": {"sj_credits": n % 7, "cs_credits": n % 5},
        "version": n + 1,
    }


# -------------------------------------------------------------- load process


async def _open_loop(
    conn: Connection, url: str, token: str, *, rate: float, total: int, students: int
) -> list[tuple[int, float, float, float, str]]:
    """Send ``total`` notifications at ``rate``/s on a fixed schedule.

    Sends ``("start", (t0, t0_wall))`` through ``conn`` first: the first send time on
    the monotonic clock (shared by every process on the machine) and on the wall clock
    (Postgres's ``clock_timestamp()``). Returns ``(n, scheduled, lateness_s, http_s, outcome)``
    per request, ``http_s`` from the scheduled time to the answer's last byte.
    """
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    target = urlsplit(url)
    client = RawClient(target.hostname or "127.0.0.1", target.port or 80, limit=200)
    results: list[tuple[int, float, float, float, str]] = []
    try:
        loop = asyncio.get_running_loop()

        async def one(n: int, scheduled: float, late: float) -> None:
            body = json.dumps(notification(n, students)).encode()
            outcome = await client.post(target.path, body, headers)
            results.append((n, scheduled, late, loop.time() - scheduled, outcome))

        start = loop.time() + 0.2
        conn.send(("start", (start, time.time() + (start - loop.time()))))
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        while sent < total:
            now = loop.time()
            due = start + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # The loop wakes a little late: send everything due by now.
            while sent < total and start + sent / rate <= now:
                scheduled = start + sent / rate
                task = asyncio.create_task(one(sent, scheduled, now - scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
        await asyncio.gather(*tasks)
    finally:
        client.close()
    return results


def _load_process(conn: Connection, url: str, token: str, kwargs: dict[str, Any]) -> None:
    """Child process entry: run the open loop, send its per-request records back."""
    os.setsid()  # Ctrl-C reaches only the bench, which stops us
    conn.send(("done", asyncio.run(_open_loop(conn, url, token, **kwargs))))
    conn.close()


def _stop_child(proc: multiprocessing.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()


# -------------------------------------------------------------------- the run


def _ms(values: list[float], q: float) -> float:
    return round(1000 * percentile(values, q), 2)


async def _wait(probe: Any, timeout_s: float, interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    idle_before = round(idle_percent(), 1)
    database = await stack.create_database()
    db = await asyncpg.connect(database)
    try:
        await db.execute(TRIGGER_SQL)
    finally:
        await db.close()
    token = secrets.token_urlsafe(24)
    sandbox = stack.sandbox()
    intake = stack.intake({KEY_NAME: token})
    syncer = stack.syncer(database, sandbox, **dict(args.syncer_env))
    print(
        f"namespace {stack.namespace}  database {database.rsplit('/', 1)[1]}  "
        f"intake :{intake.port}  syncer :{syncer.port}  sandbox :{sandbox.port}",
        flush=True,
    )

    warmup_n = round(args.rate * args.warmup)
    total = warmup_n + round(args.rate * args.duration)
    reader = await asyncpg.connect(database)
    autovacuum = await reader.fetchval("SHOW autovacuum")
    try:
        receive, send = SPAWN.Pipe(duplex=False)
        load_kwargs = {"rate": args.rate, "total": total, "students": args.students}
        proc = SPAWN.Process(
            target=_load_process,
            args=(send, f"{intake.url}/v1/events/credits", token, load_kwargs),
            daemon=True,
        )
        proc.start()
        send.close()
        assert proc.pid is not None
        try:
            print(
                f"sending {total:,} notifications at {args.rate:g}/s: {args.warmup:g} s warm-up, "
                f"then {args.duration:g} s measured ...",
                flush=True,
            )
            kind, (t0, t0_wall) = await asyncio.to_thread(receive.recv)
            assert kind == "start"
            pids = {
                "intake": intake.pid,
                "syncer": syncer.pid,
                "sandbox": sandbox.pid,
                "loadgen": proc.pid,
            }
            broker = pid_of("beam.smp")
            if broker:
                pids["rabbitmq"] = broker
            meter, postgres = CpuMeter(pids), PostgresCpu()
            await asyncio.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
            # What autovacuum does on a live database once a table has grown (50 rows +
            # 10 %): without it, the plans cached while the tables were empty (scans of
            # the whole table) stay in use for the rest of the run.
            await reader.execute("ANALYZE")
            has_pgstat = await _pgstat.reset(database)
            meter.start()
            postgres.start()
            metrics0 = await _syncer_metrics(syncer.url, stack.namespace)
            await asyncio.sleep(max(0.0, t0 + args.warmup + args.duration - time.monotonic()))
            meter.stop()
            pg_cpu = postgres.stop()
            statements = await _pgstat.read(database) if has_pgstat else None
            metrics1 = await _syncer_metrics(syncer.url, stack.namespace)
            kind, records = await asyncio.to_thread(receive.recv)
            assert kind == "done"
        except EOFError as exc:
            raise RuntimeError("the load generator died") from exc
        finally:
            _stop_child(proc)

        accepted = {r[0] for r in records if r[4] == "202"}
        versions = [n + 1 for n in accepted]

        async def all_committed() -> bool:
            count = await reader.fetchval(
                "SELECT count(*) FROM bench_commits WHERE version = ANY($1::bigint[])", versions
            )
            return bool(count == len(versions))

        await _wait(all_committed, 30)  # every accepted notification's commit, or 30 s
        rows = await reader.fetch("SELECT version, extract(epoch FROM at) AS at FROM bench_commits")
    finally:
        await reader.close()
    # Notification n (version n + 1) committed at this moment on the monotonic clock.
    commits = {r["version"] - 1: float(r["at"]) - t0_wall + t0 for r in rows}

    measured = [r for r in records if r[0] >= warmup_n]
    warm = [r for r in records if r[0] < warmup_n]
    outcomes = Counter(r[4] for r in measured)
    to_commit = [commits[r[0]] - r[1] for r in measured if r[0] in commits]
    warm_to_commit = [commits[r[0]] - r[1] for r in warm if r[0] in commits]
    http = [r[3] for r in measured if r[4] == "202"]
    after_202 = [commits[r[0]] - r[1] - r[3] for r in measured if r[0] in commits and r[4] == "202"]
    missing = sorted(accepted - commits.keys())
    cpu = {**meter.percent, "postgres": pg_cpu}
    cpu["other"] = round(max(0.0, meter.machine - sum(cpu.values())), 1)
    cpu["irq"], cpu["steal"] = meter.irq, meter.steal

    handled = metrics1["count"] - metrics0["count"]
    syncer_figures = {
        "handled": int(handled),
        "handler_mean_ms": round(1000 * (metrics1["sum"] - metrics0["sum"]) / handled, 2)
        if handled
        else None,
        "queue_lag_mean_ms": round(1000 * (metrics1["lag_sum"] - metrics0["lag_sum"]) / handled, 2)
        if handled
        else None,
    }
    # CPU of the crmsync path (intake, syncer, RabbitMQ, Postgres) per notification.
    path_cpu = sum(cpu.get(k, 0.0) for k in ("intake", "syncer", "rabbitmq", "postgres"))
    syncer_figures["path_cpu_ms_per_notification"] = (
        round(10 * path_cpu * args.duration / handled, 3) if handled else None
    )
    syncer_figures["sql"] = _pgstat.per_unit(statements, int(handled)) if statements else None
    # Each second of the measured window (by scheduled send time): p50 and p99 to commit.
    by_second: dict[int, list[float]] = {}
    for r in measured:
        if r[0] in commits:
            by_second.setdefault(int(r[1] - t0 - args.warmup), []).append(commits[r[0]] - r[1])
    series = [
        {"second": k, "p50_ms": _ms(v, 50), "p99_ms": _ms(v, 99)}
        for k, v in sorted(by_second.items())
    ]
    print("waiting for the HubSpot pushes to drain ...", flush=True)
    hubspot = await _hubspot_figures(stack, database, sandbox.url, records, args.students)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "students": args.students,
            "notifications": total,
            "namespace": stack.namespace,
            "syncers": 1,
            "syncer_env": dict(args.syncer_env),
            "sandbox": "crmsync sandbox",
        },
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "idle_percent_before": idle_before,
            "autovacuum": autovacuum,
        },
        "measured": {
            "sent": len(measured),
            "rate": round(sum(1 for r in measured if r[4] == "202") / args.duration, 1),
            "outcomes": dict(outcomes),
            "commit_p50_ms": _ms(to_commit, 50),
            "commit_p90_ms": _ms(to_commit, 90),
            "commit_p99_ms": _ms(to_commit, 99),
            "commit_max_ms": round(1000 * max(to_commit, default=float("nan")), 2),
            "http_202_p50_ms": _ms(http, 50),
            "http_202_p99_ms": _ms(http, 99),
            "after_202_p50_ms": _ms(after_202, 50),
            "after_202_p99_ms": _ms(after_202, 99),
            "send_lateness_p99_ms": _ms([r[2] for r in measured], 99),
            "cpu_percent": cpu,
            "syncer_credits_queue": syncer_figures,
            "per_second": series,
        },
        "warmup": {
            "sent": len(warm),
            "outcomes": dict(Counter(r[4] for r in warm)),
            "commit_p50_ms": _ms(warm_to_commit, 50),
            "commit_p99_ms": _ms(warm_to_commit, 99),
        },
        "accepted_without_commit": len(missing),
        "accepted_without_commit_first": missing[:10],
        "hubspot": hubspot,
        "aim": {
            "p99_under_ms": AIM_P99_MS,
            "at_rate": AIM_RATE,
            "met": bool(to_commit)
            and args.rate >= AIM_RATE
            and _ms(to_commit, 99) < AIM_P99_MS
            and not missing
            and set(outcomes) == {"202"},
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }


async def _syncer_metrics(url: str, namespace: str) -> dict[str, float]:
    """The syncer's ``crmsync_handler_seconds`` and ``crmsync_message_lag_seconds``
    (sum, count) for the credits queue, from its ``/metrics``."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    queue = f'queue="{namespace}syncer.credits"'
    values: dict[str, float] = {}
    for line in text.splitlines():
        if queue not in line:
            continue
        name, _, value = line.rpartition(" ")
        for key, metric in (
            ("sum", "crmsync_handler_seconds_sum"),
            ("count", "crmsync_handler_seconds_count"),
            ("lag_sum", "crmsync_message_lag_seconds_sum"),
        ):
            if name.startswith(metric + "{"):
                values[key] = float(value)
    return {k: values.get(k, 0.0) for k in ("sum", "count", "lag_sum")}


async def _hubspot_figures(
    stack: Stack,
    database: str,
    sandbox_url: str,
    records: list[tuple[int, float, float, float, str]],
    students: int,
) -> dict[str, Any]:
    """Once the pushes have drained: HubSpot calls per notification, and the checks."""
    accepted = sorted(r[0] for r in records if r[4] == "202")
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        drain_started = time.monotonic()

        async def drained() -> bool:
            pending = await pool.fetchval(
                "SELECT count(*) FROM contacts WHERE hubspot_synced_version < change_version"
                " OR hubspot_push_due_at IS NOT NULL"
            )
            return bool(pending == 0)

        is_drained = await _wait(drained, 60)
        drain_s = time.monotonic() - drain_started
        # Postgres: each student's stored version is the newest accepted one.
        newest: dict[str, int] = {}
        for n in accepted:
            newest[f"st-{n % students}"] = n + 1
        rows = await pool.fetch(
            """
            SELECT c.student_id, c.email, max(cc.version) AS version,
                   jsonb_object_agg(cc.credit_type, cc.balance) AS credits
            FROM contacts c JOIN contact_credits cc ON cc.contact_id = c.id
            GROUP BY c.id
            """
        )
    finally:
        await pool.close()
    stored = {r["student_id"]: r["version"] for r in rows}
    stale = sum(1 for s, v in newest.items() if stored.get(s) != v)
    balances = {r["email"]: json.loads(r["credits"]) for r in rows}
    stats = await sandbox_json(f"{sandbox_url}/_sandbox/hubspot/stats")
    objects = await sandbox_json(f"{sandbox_url}/_sandbox/hubspot/objects/contacts")
    in_hubspot = {r["properties"].get("email", ""): r["properties"] for r in objects["results"]}
    differ = sum(
        1
        for email, credits in balances.items()
        if any(in_hubspot.get(email, {}).get(k) != str(v) for k, v in credits.items())
    )
    calls = int(sum(stats["calls"].values()))
    sizes = [s for v in stats["batch_sizes"].values() for s in v]
    return {
        "drained": bool(is_drained),
        "drain_wait_s": round(drain_s, 1),
        "calls": calls,
        "calls_by_endpoint": stats["calls"],
        "rate_limited": stats["rate_limited"],
        "calls_per_notification": round(calls / max(1, len(accepted)), 4),
        "mean_batch_size": round(sum(sizes) / len(sizes), 1) if sizes else None,
        "contacts_posted": len(newest),
        "contacts_in_hubspot": len(in_hubspot),
        "hubspot_balances_differing": differ,
        "postgres_students_not_at_newest_version": stale,
    }


def report(r: dict[str, Any]) -> str:
    m, h, c = r["measured"], r["hubspot"], r["config"]
    sq = m["syncer_credits_queue"]
    cpu = m["cpu_percent"]
    errors = {k: v for k, v in m["outcomes"].items() if k != "202"}
    verdict = "met" if r["aim"]["met"] else "NOT met"
    if c["rate"] < AIM_RATE:
        verdict = f"not tested (rate below {AIM_RATE:g}/s)"
    return "\n".join(
        [
            f"credit notifications, open loop at {c['rate']:g}/s for {c['duration_s']:g} s "
            f"(after {c['warmup_s']:g} s warm-up), {c['students']:,} students, 1 syncer, "
            f"sandbox {c['sandbox']}",
            f"  achieved          {m['rate']:,.1f} notifications/s accepted (202), "
            f"{m['sent']:,} sent, errors: {errors or 'none'}",
            f"  request → commit  p50 {m['commit_p50_ms']:.2f} ms   p90 {m['commit_p90_ms']:.2f} "
            f"ms   p99 {m['commit_p99_ms']:.2f} ms   max {m['commit_max_ms']:.2f} ms",
            f"  request → 202     p50 {m['http_202_p50_ms']:.2f} ms   p99 "
            f"{m['http_202_p99_ms']:.2f} ms  (202 → commit p50 {m['after_202_p50_ms']:.2f} ms, "
            f"p99 {m['after_202_p99_ms']:.2f} ms)",
            f"  warm-up (creates) request → commit p50 {r['warmup']['commit_p50_ms']:.2f} ms, "
            f"p99 {r['warmup']['commit_p99_ms']:.2f} ms",
            f"  accepted but never committed: {r['accepted_without_commit']}",
            f"  syncer (credits queue, measured window): {sq['handled']:,} handled, handler "
            f"mean {sq['handler_mean_ms']} ms, queue lag (event time → handler start) mean "
            f"{sq['queue_lag_mean_ms']} ms",
            f"  CPU per notification (intake + syncer + RabbitMQ + Postgres): "
            f"{sq.get('path_cpu_ms_per_notification')} ms",
            *_sql_lines(sq.get("sql")),
            "  p99 to commit by second: "
            + " ".join(f"{x['p99_ms']:.0f}" for x in m["per_second"])
            + " ms",
            "  CPU, % of a core: "
            + "  ".join(f"{k} {v:.0f}" for k, v in cpu.items())
            + "  (postgres = every postgres process on the machine)",
            f"  HubSpot: {h['calls']:,} calls for {m['sent'] + r['warmup']['sent']:,} "
            f"notifications = {h['calls_per_notification']:.4f} calls/notification "
            f"(mean batch {h['mean_batch_size']}), 429s {h['rate_limited']}; drained: "
            f"{h['drained']} ({h['drain_wait_s']:.1f} s after the load)",
            f"  HubSpot contacts {h['contacts_in_hubspot']:,} = posted {h['contacts_posted']:,}: "
            f"{h['contacts_in_hubspot'] == h['contacts_posted']}; balances differing from "
            f"Postgres: {h['hubspot_balances_differing']}; Postgres students not at their newest "
            f"version: {h['postgres_students_not_at_newest_version']}",
            f"  aim: p99 request → commit < {AIM_P99_MS:g} ms at {AIM_RATE:g}/s: {verdict}",
            *(
                [
                    f"  warning: other processes took {cpu['other'] + cpu['steal']:.0f} % of a "
                    "core meanwhile: the figures are disturbed; run again on a quiet machine."
                ]
                if cpu["other"] + cpu["steal"] > OTHER_CPU_WARN
                else []
            ),
            *(
                [
                    "  warning: autovacuum is off on this server: the outbox and the balances "
                    "are never vacuumed, so Postgres's CPU per notification is higher than on "
                    "a server configured as production ones are"
                ]
                if r["environment"].get("autovacuum") == "off"
                else []
            ),
            f"  idle before the run {r['environment']['idle_percent_before']:.0f} %; "
            f"ran {r['elapsed_s']:.0f} s",
        ]
    )


def _sql_lines(sql: dict[str, Any] | None) -> list[str]:
    if not sql:
        return [
            "  SQL statements per notification: n/a (the server does not preload "
            "pg_stat_statements; see bench/README.md)"
        ]
    return [
        f"  SQL statements per notification (all of crmsync's, pg_stat_statements): "
        f"{sql['statements_per_unit']}, Postgres execution {sql['exec_ms_per_unit']} ms",
        *(
            f"    {t['per_unit']:>6} x {t['exec_ms'] / max(t['calls'], 1):.3f} ms  {t['query']}"
            for t in sql["top"]
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500, help="notifications/s (500)")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds (20)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="uncounted seconds first (default: one pass over the students, 4 s at 500/s)",
    )
    parser.add_argument("--students", type=int, default=2000, help="distinct students (2000)")
    parser.add_argument(
        "--syncer-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="CRMSYNC_X=VALUE",
        help="a setting for the syncer, e.g. CRMSYNC_DB_POOL_MAX_SIZE=20 (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "credits.json")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.students / args.rate
    return args


def main() -> int:
    return bench_main("credits", parse_args(), run, report)


if __name__ == "__main__":
    sys.exit(main())
