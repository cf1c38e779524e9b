"""What limited a scaling phase: samples taken while it runs, and a verdict from them.

:class:`Sampler` reads, every ``interval_s`` while a phase runs:

- each syncer's ``/metrics`` (``shared/metrics.py``, ``shared/budget.py``): handler
  seconds and counts per queue, queue lag, provider action outcomes, and
  ``crmsync_provider_budget_utilisation`` (the share of the replica's request budget
  used; its maximum over the phase is kept);
- ``pg_stat_activity``: connections of the syncers' main pools (``crmsync-syncer``) on
  the bench's database and of their CRM pools (``crmsync``) on the CRM database, open
  and busy (any state but ``idle``: running a statement or inside a transaction);
- the ready messages of the phase's queues (a passive declare: messages waiting for a
  free prefetch slot, unacked ones excluded).

crmsync exports no gauge of handlers in flight or of pool connections held, so both are
derived: handlers in flight per queue by Little's law (handler seconds ÷ wall seconds),
pool use from the server's side. :func:`diagnose` turns the figures into the likely
limits, most certain first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from _stack import AMQP_URL, Service
from prometheus_client.parser import text_string_to_metric_families

# Shares of a ceiling above which we call it reached.
NEAR = 0.8
# A syncer above this much of one core is CPU-bound (asyncio runs on one core).
SYNCER_CPU_BOUND = 85.0

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Snapshot:
    """Prometheus text → ``{(sample name, sorted labels): value}``."""
    found: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return found


def total(snapshot: Snapshot, name: str, **labels: str) -> float:
    """Sum of ``name``'s samples whose labels match; a ``queue`` matches by suffix (the
    metrics carry the namespaced queue name)."""
    summed = 0.0
    for (sample, sample_labels), value in snapshot.items():
        if sample != name:
            continue
        have = dict(sample_labels)
        if all(
            have.get(k, "").endswith(v) if k == "queue" else have.get(k) == v
            for k, v in labels.items()
        ):
            summed += value
    return summed


@dataclass
class Limits:
    """The ceilings a phase runs under (per syncer unless said otherwise)."""

    syncers: int
    prefetch: dict[str, int]
    db_pool_max: int
    queue_db_connections: int
    crm_pool_max: int


@dataclass
class Sampler:
    """Samples one phase (see the module docstring): ``await start()``, ``await stop()``."""

    syncers: list[Service]
    pool: asyncpg.Pool
    databases: tuple[str, str]  # (crmsync's, the CRM's) names
    namespace: str
    queues: list[str]
    interval_s: float = 0.5
    _first: list[Snapshot] = field(default_factory=list)
    _last: list[Snapshot] = field(default_factory=list)
    _budget_max: dict[str, float] = field(default_factory=dict)
    _db: list[tuple[int, int, int]] = field(default_factory=list)  # open, busy, crm busy
    _ready: dict[str, list[int]] = field(default_factory=dict)
    _t0: float = 0.0
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._first = await self._scrape()
        self._last = list(self._first)
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> dict[str, Any]:
        """The phase's figures: per queue, database, CRM, budgets, actions."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        wall = time.monotonic() - self._t0
        self._last = await self._scrape()
        return self._figures(wall)

    async def _scrape(self) -> list[Snapshot]:
        async with aiohttp.ClientSession() as session:

            async def one(service: Service) -> Snapshot:
                async with session.get(f"{service.url}/metrics") as resp:
                    return parse_metrics(await resp.text())

            return list(await asyncio.gather(*(one(s) for s in self.syncers)))

    async def _loop(self) -> None:
        connection = await aio_pika.connect(
            AMQP_URL, client_properties={"connection_name": "bench-scaling-sampler"}
        )
        try:
            channel = await connection.channel()
            while True:
                await asyncio.sleep(self.interval_s)
                self._last = await self._scrape()
                for snapshot in self._last:
                    for (name, labels), value in snapshot.items():
                        if name == "crmsync_provider_budget_utilisation":
                            provider = dict(labels)["provider"]
                            self._budget_max[provider] = max(
                                self._budget_max.get(provider, 0.0), value
                            )
                self._db.append(await self._connections())
                for name in self.queues:
                    if channel.is_closed:
                        channel = await connection.channel()
                    try:
                        queue = await channel.declare_queue(self.namespace + name, passive=True)
                    except aio_pika.exceptions.ChannelClosed:
                        continue
                    count = queue.declaration_result.message_count or 0
                    self._ready.setdefault(name, []).append(count)
        finally:
            await connection.close()

    async def _connections(self) -> tuple[int, int, int]:
        main, crm = self.databases
        row = await self.pool.fetchrow(
            """
            SELECT count(*) FILTER (WHERE datname = $1 AND application_name = 'crmsync-syncer')
                       AS open,
                   count(*) FILTER (WHERE datname = $1 AND application_name = 'crmsync-syncer'
                                    AND state <> 'idle') AS busy,
                   count(*) FILTER (WHERE datname = $2 AND application_name = 'crmsync'
                                    AND state <> 'idle') AS crm_busy
            FROM pg_stat_activity
            """,
            main,
            crm,
        )
        return int(row["open"]), int(row["busy"]), int(row["crm_busy"])

    def _delta(self, name: str, **labels: str) -> float:
        return sum(
            total(b, name, **labels) - total(a, name, **labels)
            for a, b in zip(self._first, self._last, strict=True)
        )

    def _figures(self, wall: float) -> dict[str, Any]:
        n = len(self.syncers)
        queues = {}
        for name in self.queues:
            busy_s = self._delta("crmsync_handler_seconds_sum", queue=name)
            handled = self._delta("crmsync_handler_seconds_count", queue=name)
            lag_s = self._delta("crmsync_message_lag_seconds_sum", queue=name)
            lags = self._delta("crmsync_message_lag_seconds_count", queue=name)
            ready = self._ready.get(name) or [0]
            queues[name] = {
                "handled": int(handled),
                "handler_mean_ms": round(1000 * busy_s / handled, 1) if handled else None,
                "in_flight_per_syncer": round(busy_s / wall / n, 1),
                "lag_mean_ms": round(1000 * lag_s / lags, 1) if lags else None,
                "ready_mean": round(sum(ready) / len(ready), 1),
                "ready_max": max(ready),
            }
        db = self._db or [(0, 0, 0)]
        outcomes: dict[str, int] = {}
        for outcome in ("completed", "retried", "failed", "lease_busy"):
            count = int(self._delta("crmsync_provider_actions_total", outcome=outcome))
            if count:
                outcomes[outcome] = count
        return {
            "wall_s": round(wall, 2),
            "queues": queues,
            "db_open_max": max(d[0] for d in db),
            "db_busy_mean": round(sum(d[1] for d in db) / len(db), 1),
            "db_busy_max": max(d[1] for d in db),
            "crm_busy_mean": round(sum(d[2] for d in db) / len(db), 1),
            "crm_busy_max": max(d[2] for d in db),
            "budget_utilisation_max": {k: round(v, 2) for k, v in self._budget_max.items()},
            "provider_actions": outcomes,
        }


def diagnose(
    figures: dict[str, Any], cpu: dict[str, float], limits: Limits, *, floor_ms: dict[str, float]
) -> list[str]:
    """The likely limits of one phase, most certain first (never empty).

    Args:
        figures: :meth:`Sampler.stop`'s result.
        cpu: % of one core per process (``syncer1``...), ``rabbitmq``, ``postgres``,
            ``other`` and ``machine`` (everything), over the same phase.
        limits: the ceilings the syncers were configured with.
        floor_ms: per queue, the handler time its provider or CRM latency alone costs.
    """
    found: list[str] = []
    cores = os.cpu_count() or 1
    n = limits.syncers
    if cpu.get("machine", 0.0) >= NEAR * 100 * cores:
        found.append(
            f"the machine's CPUs: {cpu['machine']:.0f} % of {100 * cores} % busy (syncers "
            f"{sum(v for k, v in cpu.items() if k.startswith('syncer')):.0f}, RabbitMQ "
            f"{cpu.get('rabbitmq', 0):.0f}, Postgres {cpu.get('postgres', 0):.0f}, other "
            f"{cpu.get('other', 0):.0f}); more syncers on this host cannot add throughput"
        )
    hot = [
        f"{k} {v:.0f} %" for k, v in cpu.items() if k.startswith("syncer") and v >= SYNCER_CPU_BOUND
    ]
    if hot:
        found.append(f"syncer CPU (one core each at most): {', '.join(hot)}")
    for name, q in figures["queues"].items():
        prefetch = limits.prefetch.get(name, 0)
        if q["ready_mean"] >= 1 and q["in_flight_per_syncer"] >= NEAR * prefetch:
            found.append(
                f"prefetch of {name}: {q['in_flight_per_syncer']:.0f} of {prefetch} handlers in "
                f"flight per syncer with {q['ready_mean']:.0f} messages waiting on average: "
                f"raise CRMSYNC_PREFETCH_COUNT or CRMSYNC_QUEUE_PREFETCH='{{\"{name}\": ...}}'"
            )
    pool = n * limits.db_pool_max
    # Each queue of the path may hold its share of a syncer's pool, and no more than it.
    shares = n * min(limits.db_pool_max, limits.queue_db_connections * len(figures["queues"]))
    if figures["db_busy_mean"] >= NEAR * pool or figures["db_busy_max"] >= pool:
        found.append(
            f"main DB pool: {figures['db_busy_mean']} of {n} x {limits.db_pool_max} connections "
            f"busy on average (max {figures['db_busy_max']}): raise CRMSYNC_DB_POOL_MAX_SIZE"
        )
    elif figures["db_busy_mean"] >= NEAR * shares:
        found.append(
            f"the queues' shares of the DB pool: {figures['db_busy_mean']} connections busy on "
            f"average of {shares} ({n} syncers x {len(figures['queues'])} queues x "
            f"{limits.queue_db_connections}, CRMSYNC_QUEUE_DB_CONNECTIONS)"
        )
    if limits.crm_pool_max and figures["crm_busy_mean"] >= NEAR * n * limits.crm_pool_max:
        found.append(
            f"CRM pool: {figures['crm_busy_mean']} of {n} x {limits.crm_pool_max} CRM "
            f"connections busy on average: raise CRMSYNC_CRM_POOL_MAX_SIZE (the CRM's "
            f"max_connections ÷ replicas bounds it)"
        )
    for provider, used in figures["budget_utilisation_max"].items():
        if used >= NEAR:
            found.append(
                f"{provider}'s rate budget: {used:.0%} of each syncer's share used at the peak"
            )
    busy = figures["provider_actions"].get("lease_busy", 0)
    if busy:
        found.append(f"customer leases: {busy} actions found their customer's lease busy")
    if cpu.get("postgres", 0.0) >= NEAR * 100:
        found.append(f"Postgres CPU: {cpu['postgres']:.0f} % of a core")
    starved = all(q["ready_mean"] < 1 for q in figures["queues"].values())
    if starved:
        found.append(
            "no backlog: every queue of the path was empty most of the time, so the syncers "
            "waited for work (the load or an upstream stage, not the syncers)"
        )
    if not found:
        slow = [
            f"{name} {q['handler_mean_ms']} ms (latency floor {floor_ms.get(name, 0):.0f} ms)"
            for name, q in figures["queues"].items()
            if q["handler_mean_ms"] is not None
        ]
        found.append(
            "no metered ceiling reached; handler means: "
            + "; ".join(slow)
            + ": time above the floor is waiting for a CPU or the event loop"
        )
    return found
