"""A three-node RabbitMQ cluster loses a node under load, then another: what is lost?

What runs, all on this machine (nothing touches the system RabbitMQ on 5672):

- three RabbitMQ nodes from Debian's ``rabbitmq-server`` (``bench/_rabbit_cluster.py``:
  ``crmsync-bench-{0,1,2}@localhost``, AMQP 5680-5682, distribution 25680-25682, data
  in a temporary folder), joined into one cluster;
- crmsync's topology declared through node 0 (so node 0 leads every quorum queue at
  first), each queue's replicas checked (3 of 3);
- ``crmsync sandbox``, ``crmsync intake`` and two ``crmsync syncer`` processes
  (``bench/_stack.py``: their own database and namespace);
- a load process sending, open loop, signed Shopify ``orders/paid`` webhooks (the real
  order ``tests/fixtures/shopify_order_450789469.json``, each with its own order,
  customer and webhook id) and credit notifications (each for its own student) to intake.

The failover: after ``--before-kill`` seconds, ``kill -9`` the node that leads the
busiest quorum queue (the one the load feeds fastest: ``syncer.credits`` at the default
rates); ``--down`` seconds later start it again and wait until it is back
and no quorum queue depends on the next victim alone; then ``kill -9`` the leader of the
busiest queue again (a second node: if the first one leads again, the leaders are
rebalanced, else a follower is killed), and start it again ``--down`` seconds later.
The load goes on ``--after`` seconds more, then the bench waits until every accepted
event is applied (or ``--drain-timeout``).

The services' broker URL: by default (``--service-urls all``) every service gets the
comma-separated list of the three nodes, connects to one (from a random start) and, when
its node is killed, reconnects to another, declares the topology there and subscribes
again (``shared/broker.py``); a killed node may be any service's node.
``--service-urls survivor`` gives them node 2 only, which is then never killed: the
queues' failover (leaders move, replicas catch up) under clients that stay connected.

Printed (and written to ``bench/results/cluster.json``): webhooks and notifications
sent and answered 2xx, effects in Postgres (an ``orders`` row per accepted order, an
``audit_log`` row per accepted notification), lost (2xx, never applied), duplicated
(applied twice: two audit rows for one notification, two enrolments for one order's
customer), answers other than 2xx (503 and others) in all and within 30 s of each kill,
the time to recover after each kill (until intake answers 2xx again without a failure,
and the longest pause of commits in Postgres), each quorum queue's leader before and
after, and the services' peak memory (VmHWM).

    .venv/bin/python bench/cluster.py [--orders-rate 20] [--credits-rate 40]
        [--before-kill 15] [--down 15] [--after 15] [--service-urls all|survivor]

Aims (issue 12): 0 lost, 0 duplicated, recovery under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import multiprocessing
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _rabbit_cluster import AMQP_PORT_BASE, LocalCluster, Node

# With --service-urls survivor the services use only this node, which is never killed.
SURVIVOR = 2
SURVIVOR_URL = f"amqp://guest:guest@127.0.0.1:{AMQP_PORT_BASE + SURVIVOR}/"
# _stack reads it at import: its cleanup then talks to our cluster, not the system node.
os.environ["CRMSYNC_BENCH_AMQP"] = SURVIVOR_URL

import aio_pika  # noqa: E402
import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from _common import RESULTS, ROOT, peak_rss, peak_rss_report, peak_rss_results  # noqa: E402
from _stack import Service, Stack  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
KEY_NAME = "bench"
ORDER_FIXTURE = ROOT / "tests" / "fixtures" / "shopify_order_450789469.json"
# A failure this close after a kill counts as "during the failover".
FAILOVER_WINDOW_S = 30.0
AIM_RECOVERY_S = 10.0
ORDER_ID_BASE = 9_000_000_000
CUSTOMER_ID_BASE = 8_000_000_000


# -------------------------------------------------------------- load process


def order_external_id(event_id: str) -> str:
    """The Shopify order id of webhook ``cluster-<tag>-order-<n>``."""
    return str(ORDER_ID_BASE + int(event_id.rsplit("-", 1)[1]))


def order_body(template: dict[str, Any], tag: str, n: int) -> bytes:
    """Order ``n``: the fixture with its own order id, customer and email."""
    order = copy.deepcopy(template)
    order_id = ORDER_ID_BASE + n
    customer_id = CUSTOMER_ID_BASE + n
    order["id"] = order_id
    order["admin_graphql_api_id"] = f"gid://shopify/Order/{order_id}"
    order["order_number"] = 100_000 + n
    order["name"] = f"#{order['order_number']}"
    order["email"] = f"cluster-{tag}-{n}@bench.test"
    order["customer"]["id"] = customer_id
    order["customer"]["admin_graphql_api_id"] = f"gid://shopify/Customer/{customer_id}"
    order["customer"]["email"] = order["email"]
    order["updated_at"] = datetime.now(UTC).isoformat()
    return json.dumps(order).encode()


def credit_body(tag: str, n: int) -> bytes:
    """Notification ``n``: its own student, so each one leaves exactly one audit row."""
    return json.dumps(
        {
            "idempotencyKey": f"cluster-{tag}-{n}",
            "reason": "booking_created",
            "occurredAt": datetime.now(UTC).isoformat(),
            "contact": {"studentId": f"cl-{tag}-{n}", "email": f"cl-{tag}-{n}@bench.test"},
            "credits": {"sj_credits": n % 7, "cs_credits": n % 5},
            "version": 1,
        }
    ).encode()


async def _open_loop(conn: Connection, base_url: str, opts: dict[str, Any]) -> list[list[Any]]:
    """Both streams on fixed schedules until the bench says stop.

    Returns ``[kind, event id, scheduled wall time, answered wall time, outcome]`` per
    request; outcome is the HTTP status or the client error's name.
    """
    from services.intake.auth import shopify_hmac

    template = json.loads(ORDER_FIXTURE.read_text())
    tag, secret, token = opts["tag"], opts["shopify_secret"], opts["token"]
    rates = {"order": opts["orders_rate"], "credit": opts["credits_rate"]}
    sent = {"order": 0, "credit": 0}
    results: list[list[Any]] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=400), timeout=timeout
    ) as session:
        loop = asyncio.get_running_loop()
        offset = time.time() - loop.time()

        async def one(kind: str, n: int, scheduled: float) -> None:
            if kind == "order":
                event_id = f"cluster-{tag}-order-{n}"
                body = order_body(template, tag, n)
                url = f"{base_url}/webhooks/shopify"
                headers = {
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": "orders/paid",
                    "X-Shopify-Webhook-Id": event_id,
                    "X-Shopify-Shop-Domain": "crmsync-bench.myshopify.com",
                    "X-Shopify-Hmac-Sha256": shopify_hmac(body, secret),
                }
            else:
                event_id = f"{KEY_NAME}:cluster-{tag}-{n}"
                body = credit_body(tag, n)
                url = f"{base_url}/v1/events/credits"
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    outcome = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            results.append([kind, event_id, scheduled + offset, time.time(), outcome])

        start = loop.time() + 0.2
        conn.send(("start", start + offset))
        tasks: set[asyncio.Task[None]] = set()
        while not conn.poll():
            due = {k: start + sent[k] / rates[k] for k in rates if rates[k] > 0}
            kind = min(due, key=lambda k: due[k])
            wait = due[kind] - loop.time()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.05))
                continue
            task = asyncio.create_task(one(kind, sent[kind], due[kind]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent[kind] += 1
        await asyncio.gather(*tasks)
    return results


def _load_process(conn: Connection, base_url: str, opts: dict[str, Any]) -> None:
    os.setsid()  # Ctrl-C reaches only the bench, which stops us
    conn.send(("done", asyncio.run(_open_loop(conn, base_url, opts))))
    conn.close()


# -------------------------------------------------------------- the cluster side


def busiest_leader(
    cluster: LocalCluster, via: Node, namespace: str, busiest: str
) -> tuple[str, str, int]:
    """(queue, leader node, messages ready) of ``busiest``, the queue the load feeds
    fastest. Ready counts say little here (the syncers keep up, and the coalescing
    HubSpot push queue holds a few messages by design), so the rates decide."""
    leaders = cluster.quorum_leaders(via, namespace + "syncer.")
    queue = namespace + busiest
    return queue, *leaders[queue]


def pick_victim(
    cluster: LocalCluster, namespace: str, busiest: str, service_urls: str, last: Node | None
) -> tuple[Node, str, str, int, str]:
    """(node to kill, busiest queue, its leader, messages ready, a note): the leader of
    the busiest queue, unless it is the node just killed (round 2 wants a second node)
    or, with ``--service-urls survivor``, the services' node; then the leaders are
    rebalanced once, and if that does not help a follower is killed instead."""
    survivor = cluster.nodes[SURVIVOR]
    spared = {last.name} if last is not None else set()
    if service_urls == "survivor":
        spared.add(survivor.name)
    via = survivor if last is not survivor else cluster.nodes[0]
    queue, leader, ready = busiest_leader(cluster, via, namespace, busiest)
    if leader in spared:
        cluster.ctl(via, "rebalance", "quorum", tool="rabbitmq-queues", check=False)
        queue, leader, ready = busiest_leader(cluster, via, namespace, busiest)
    if leader not in spared:
        return cluster.node(leader), queue, leader, ready, ""
    victim = next(n for n in cluster.nodes if n.name not in spared)
    return victim, queue, leader, ready, f"{leader} leads it and is spared; killed a follower"


async def declare_topology(url: str, namespace: str, syncer_env: dict[str, str]) -> list[str]:
    """Declare what the syncers will (their queues with retry queues) through ``url``;
    returns the work queues' names."""
    from services.syncer.main import consumer_plan
    from shared.jobs import JOB_QUEUES
    from shared.queues import ALL
    from shared.settings import SyncerSettings
    from shared.topology import Topology

    settings = SyncerSettings(
        _env_file=None,
        **{k.removeprefix("CRMSYNC_").lower(): v for k, v in syncer_env.items()},
    )
    specs = {s.name: s for s in (*ALL, *JOB_QUEUES.values())}
    specs.update({spec.name: spec for spec, _, _ in consumer_plan(settings)})
    topology = Topology(namespace, group_size=settings.quorum_group_size())
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await topology.declare(channel, specs.values())
    finally:
        await connection.close()
    return sorted(declared)


# -------------------------------------------------------------- the run


async def run(stack: Stack, cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    nodes = cluster.nodes
    survivor = nodes[SURVIVOR]
    service_url = survivor.url if args.service_urls == "survivor" else ",".join(
        n.url for n in nodes
    )  # fmt: skip
    print(f"starting 3 RabbitMQ nodes under {cluster.tmp} ...", flush=True)
    t = time.monotonic()
    await asyncio.to_thread(cluster.start)
    print(f"cluster of {len(nodes)} running in {time.monotonic() - t:.0f} s", flush=True)

    syncer_env = {
        "CRMSYNC_AMQP_URL": service_url,
        # The bench is about the broker: no provider rate limit in the way.
        "CRMSYNC_SHOPIFY_RATE_PER_S": "1000",
        "CRMSYNC_COMMERCE7_RATE_PER_S": "1000",
        "CRMSYNC_SHUTDOWN_GRACE_S": "5",
    }
    queues = await declare_topology(nodes[0].url, stack.namespace, syncer_env)
    replicas = {
        q: len(await asyncio.to_thread(cluster.quorum_members, nodes[0], q))
        for q in queues
    }  # fmt: skip
    leaders_before = cluster.quorum_leaders(nodes[0], stack.namespace)
    print(
        f"declared {len(queues)} work queues through {nodes[0].name}; replicas per queue: "
        f"{sorted(set(replicas.values()))}",
        flush=True,
    )

    database = await stack.create_database()
    token = secrets.token_urlsafe(24)
    shopify_secret = secrets.token_urlsafe(24)
    sandbox = stack.sandbox()
    intake = stack.start(
        "intake",
        {
            "CRMSYNC_AMQP_URL": service_url,
            "CRMSYNC_API_KEYS": json.dumps({KEY_NAME: token}),
            "CRMSYNC_SHOPIFY_WEBHOOK_SECRET": shopify_secret,
            "CRMSYNC_COMMERCE7_TENANTS": "bench",
        },
        ready_path="/readyz",
    )
    syncers = [stack.syncer(database, sandbox, **syncer_env) for _ in range(2)]
    services: list[Service] = [intake, *syncers, sandbox]
    print(
        f"namespace {stack.namespace}  intake :{intake.port}  syncers "
        f"{', '.join(':' + str(s.port) for s in syncers)}  sandbox :{sandbox.port}  "
        f"services on {args.service_urls}",
        flush=True,
    )

    main_end, child_end = SPAWN.Pipe()
    opts = {
        "tag": stack.tag,
        "shopify_secret": shopify_secret,
        "token": token,
        "orders_rate": args.orders_rate,
        "credits_rate": args.credits_rate,
    }
    proc = SPAWN.Process(target=_load_process, args=(child_end, intake.url, opts), daemon=True)
    proc.start()
    child_end.close()
    kills: list[dict[str, Any]] = []
    busiest = "syncer.credits" if args.credits_rate >= args.orders_rate else "syncer.orders"
    try:
        kind, load_start = await asyncio.to_thread(main_end.recv)
        assert kind == "start"
        print(
            f"load: {args.orders_rate:g} orders/s + {args.credits_rate:g} credit notifications/s",
            flush=True,
        )
        await asyncio.sleep(args.before_kill)
        for round_ in (1, 2):
            last = cluster.node(kills[-1]["node"]) if kills else None
            victim, queue, leader, ready, note = await asyncio.to_thread(
                pick_victim, cluster, stack.namespace, busiest, args.service_urls, last
            )
            if round_ == 2:
                waited = time.monotonic()
                while await asyncio.to_thread(cluster.is_quorum_critical, victim):
                    if time.monotonic() - waited > 120:
                        raise RuntimeError(f"{victim.name} stayed quorum critical for 120 s")
                    await asyncio.sleep(1)
            killed_at = time.time()
            await asyncio.to_thread(cluster.kill, victim)
            print(
                f"kill -9 {victim.name} at +{killed_at - load_start:.1f} s (busiest queue "
                f"{queue.removeprefix(stack.namespace)}, {ready} ready, leader {leader})",
                flush=True,
            )
            await asyncio.sleep(2)
            via = next(n for n in nodes if n is not victim)
            leaders = await asyncio.to_thread(cluster.quorum_leaders, via, stack.namespace)
            new_leader = leaders.get(queue, ("?", 0))[0]
            await asyncio.sleep(max(0.0, killed_at + args.down - time.time()))
            restart = time.time()
            await asyncio.to_thread(cluster.start_node, victim)
            back_at = time.time()
            print(
                f"  {queue.removeprefix(stack.namespace)} led by {new_leader} after the kill; "
                f"{victim.name} back at +{back_at - load_start:.1f} s "
                f"(start took {back_at - restart:.1f} s)",
                flush=True,
            )
            kills.append(
                {
                    "round": round_, "node": victim.name, "queue": queue, "ready": ready,
                    "leader": leader, "note": note,
                    "killed_at": killed_at, "back_at": back_at, "new_leader": new_leader,
                }
            )  # fmt: skip
        await asyncio.sleep(args.after)
        main_end.send("stop")
        kind, records = await asyncio.to_thread(main_end.recv)
        assert kind == "done"
    except EOFError as exc:
        raise RuntimeError("the load generator died") from exc
    finally:
        if proc.is_alive():
            proc.join(30)
        if proc.is_alive():
            proc.kill()
    load_end = time.time()
    rss = peak_rss_results(
        [peak_rss(f"{s.role}:{s.port}", s.pid, aim=s.role != "sandbox") for s in services]
    )
    leaders_after = cluster.quorum_leaders(survivor, stack.namespace)

    accepted = {
        kind: {r[1] for r in records if r[0] == kind and r[4].startswith("2")}
        for kind in ("order", "credit")
    }
    order_ids = {e: order_external_id(e) for e in accepted["order"]}
    print(
        f"load stopped: {len(records):,} requests; waiting for the accepted ones to be applied",
        flush=True,
    )
    db = await asyncpg.connect(database)
    try:
        deadline = time.monotonic() + args.drain_timeout
        while True:
            applied = await _applied(db, accepted, order_ids)
            missing = sum(len(accepted[k] - applied[k]) for k in accepted)
            if missing == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        duplicated = await _duplicated(db, accepted, order_ids)
        commits = [
            float(t)
            for t in await db.fetchval(
                """
                SELECT array_agg(extract(epoch FROM created_at) ORDER BY created_at)
                FROM (SELECT created_at FROM audit_log
                      UNION ALL SELECT created_at FROM orders) AS c
                """
            )
            or []
        ]
    finally:
        await db.close()

    return _figures(
        args, records, accepted, applied, duplicated, kills, commits, load_start, load_end,
        replicas=replicas, peak_rss=rss, namespace=stack.namespace,
        leaders_before=leaders_before, leaders_after=leaders_after,
    )  # fmt: skip


async def _applied(
    db: asyncpg.Connection, accepted: dict[str, set[str]], order_ids: dict[str, str]
) -> dict[str, set[str]]:
    orders = await db.fetch(
        "SELECT last_event_id, external_id FROM orders WHERE provider = 'shopify'"
        " AND external_id = ANY($1::text[])",
        [order_ids[e] for e in accepted["order"]],
    )
    by_external = {v: k for k, v in order_ids.items()}
    credits = await db.fetch(
        "SELECT DISTINCT event_id FROM audit_log WHERE event_id = ANY($1::text[])",
        list(accepted["credit"]),
    )
    return {
        "order": {by_external[r["external_id"]] for r in orders},
        "credit": {r["event_id"] for r in credits},
    }


async def _duplicated(
    db: asyncpg.Connection, accepted: dict[str, set[str]], order_ids: dict[str, str]
) -> dict[str, int]:
    credits = await db.fetchval(
        "SELECT count(*) FROM (SELECT event_id FROM audit_log WHERE event_id = ANY($1::text[])"
        " GROUP BY event_id HAVING count(*) > 1) AS d",
        list(accepted["credit"]),
    )
    # Each order has a customer of its own: a second enrolment would be the order twice.
    orders = await db.fetchval(
        """
        SELECT count(*) FROM (
            SELECT o.external_id FROM orders o JOIN enrolments e ON e.source_order_id = o.id
                OR e.customer_id = o.customer_id
            WHERE o.provider = 'shopify' AND o.external_id = ANY($1::text[])
            GROUP BY o.external_id HAVING count(DISTINCT e.id) > 1) AS d
        """,
        [order_ids[e] for e in accepted["order"]],
    )
    return {"order": int(orders), "credit": int(credits)}


def _figures(
    args: argparse.Namespace,
    records: list[list[Any]],
    accepted: dict[str, set[str]],
    applied: dict[str, set[str]],
    duplicated: dict[str, int],
    kills: list[dict[str, Any]],
    commits: list[float],
    load_start: float,
    load_end: float,
    **extra: Any,
) -> dict[str, Any]:
    failures = [r for r in records if not r[4].startswith("2")]
    per_kill = []
    for kill in kills:
        t0 = kill["killed_at"]
        window = [r for r in records if t0 <= r[2] < t0 + FAILOVER_WINDOW_S]
        failed = [r for r in window if not r[4].startswith("2")]
        # Intake recovered when the last failure scheduled after the kill was answered.
        intake_recovery = max((r[3] - t0 for r in failed), default=0.0)
        # The syncers: the longest pause between two commits from the kill on.
        after = [c for c in commits if t0 - 1 <= c <= t0 + FAILOVER_WINDOW_S]
        gaps = [b - a for a, b in itertools.pairwise(after)]
        longest_pause = max(gaps, default=FAILOVER_WINDOW_S)
        per_kill.append(
            {
                **{k: v for k, v in kill.items() if k not in ("killed_at", "back_at")},
                "killed_at_s": round(t0 - load_start, 1),
                "down_s": round(kill["back_at"] - t0, 1),
                "requests_in_window": len(window),
                "503s": sum(r[4] == "503" for r in failed),
                "other_failures": sum(r[4] != "503" for r in failed),
                "intake_recovery_s": round(intake_recovery, 2),
                "longest_commit_pause_s": round(longest_pause, 2),
                "recovery_s": round(max(intake_recovery, longest_pause), 2),
            }
        )
    sent = {k: sum(r[0] == k for r in records) for k in ("order", "credit")}
    lost = {k: sorted(accepted[k] - applied[k]) for k in accepted}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU, {platform.python_version()}",
        "args": {k: v for k, v in vars(args).items() if k != "output"},
        "load_s": round(load_end - load_start, 1),
        "sent": sent,
        "accepted": {k: len(v) for k, v in accepted.items()},
        "applied": {k: len(applied[k] & accepted[k]) for k in accepted},
        "lost": {k: len(v) for k, v in lost.items()},
        "lost_examples": {k: v[:5] for k, v in lost.items()},
        "duplicated": duplicated,
        "failures": {
            "503": sum(r[4] == "503" for r in failures),
            "other": sum(r[4] != "503" for r in failures),
            "outcomes": sorted({r[4] for r in failures}),
        },
        "kills": per_kill,
        **extra,
    }


def report(r: dict[str, Any]) -> str:
    lines = [
        f"crmsync on a 3-node RabbitMQ cluster ({r['machine']}), services on "
        f"{r['args']['service_urls']}; {r['load_s']} s of load",
        f"quorum queue replicas: {sorted(set(r['replicas'].values()))} (per queue)",
        "",
        "                      orders   credit notifications",
        f"sent                  {r['sent']['order']:>6,}   {r['sent']['credit']:>6,}",
        f"answered 2xx          {r['accepted']['order']:>6,}   {r['accepted']['credit']:>6,}",
        f"effects in Postgres   {r['applied']['order']:>6,}   {r['applied']['credit']:>6,}",
        f"lost (2xx, not applied) {r['lost']['order']:>4,}   {r['lost']['credit']:>6,}",
        f"duplicated            {r['duplicated']['order']:>6,}   {r['duplicated']['credit']:>6,}",
        f"answers not 2xx: {r['failures']['503']} x 503, {r['failures']['other']} other "
        f"{r['failures']['outcomes']}",
        "",
    ]
    for k in r["kills"]:
        lines.append(
            f"kill {k['round']}: {k['node']} at +{k['killed_at_s']} s (led "
            f"{k['queue'].split('.', 1)[1]}; new leader {k['new_leader']}), down "
            f"{k['down_s']} s: {k['503s']} x 503 and {k['other_failures']} other failures "
            f"of {k['requests_in_window']} requests in the {FAILOVER_WINDOW_S:.0f} s after; "
            f"intake recovered in {k['intake_recovery_s']} s, longest commit pause "
            f"{k['longest_commit_pause_s']} s -> recovery {k['recovery_s']} s"
        )
        if k.get("note"):
            lines.append(f"  note: {k['note']}")
    worst = max((k["recovery_s"] for k in r["kills"]), default=0.0)
    lost, dup = sum(r["lost"].values()), sum(r["duplicated"].values())
    lines += [
        "",
        f"aims: 0 lost ({'met' if lost == 0 else 'NOT met'}: {lost}), 0 duplicated "
        f"({'met' if dup == 0 else 'NOT met'}: {dup}), recovery < {AIM_RECOVERY_S:.0f} s "
        f"({'met' if worst < AIM_RECOVERY_S else 'NOT met'}: {worst} s)",
        peak_rss_report(r["peak_rss"]),
    ]
    if any(r["lost_examples"].values()):
        lines.append(f"lost, first ids: {r['lost_examples']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders-rate", type=float, default=20.0, help="webhooks/s")
    parser.add_argument("--credits-rate", type=float, default=40.0, help="notifications/s")
    parser.add_argument("--before-kill", type=float, default=15.0, help="s of load first")
    parser.add_argument("--down", type=float, default=15.0, help="s a killed node stays down")
    parser.add_argument("--after", type=float, default=15.0, help="s of load after the last")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument(
        "--service-urls", choices=("all", "survivor"), default="all",
        help="the services' CRMSYNC_AMQP_URL: all three nodes (they fail over between"
        " them), or only node 2, which is then never killed",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS / "cluster.json")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="crmsync-cluster-")))
    stack = Stack("cluster")
    try:
        results = asyncio.run(run(stack, cluster, args))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what the bench started", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            stack.close()
        except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
            print(f"cleanup of the stack failed: {exc}", file=sys.stderr)
        finally:
            cluster.stop()
    print()
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
