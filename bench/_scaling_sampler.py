"""Samples of a scaling phase while it runs: syncer metrics, pool connections, backlogs.

:class:`Sampler` reads, every ``interval_s`` while a phase runs:

- each syncer's ``/metrics`` (``shared/metrics.py``, ``shared/budget.py``): handler
  seconds and counts per queue, queue lag, provider action outcomes, and
  ``crmsync_provider_budget_utilisation`` (the share of the replica's request budget
  used; its maximum over the phase is kept);
- ``pg_stat_activity``: connections of the syncers' main pools (``crmsync-syncer``) on
  the bench's database and of their CRM pools (``crmsync``) on the CRM database, open
  and busy (any state but ``idle``: running a statement or inside a transaction), and
  what the busy main-pool ones were doing: running, waiting in Postgres (a lock, the
  WAL: ``wait_event``) or held idle in a transaction by the syncer;
- the ready messages of the phase's queues (a passive declare: messages waiting for a
  free prefetch slot, unacked ones excluded).

crmsync exports no gauge of handlers in flight or of pool connections held, so both are
derived: handlers in flight per queue by Little's law (handler seconds ÷ wall seconds,
over the phase and over the sample intervals that had a backlog), pool use from the
server's side. ``bench/_scaling_limits.py`` turns the figures into likely limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from _stack import AMQP_URL, Service
from prometheus_client.parser import text_string_to_metric_families

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
    # What the busy main-pool connections were doing, summed over the samples.
    _doing: Counter[str] = field(default_factory=Counter)
    _waits: Counter[str] = field(default_factory=Counter)
    _ready: dict[str, list[int]] = field(default_factory=dict)
    # Per sample: (monotonic s, handler seconds so far per queue, ready per queue).
    _series: list[tuple[float, dict[str, float], dict[str, int]]] = field(default_factory=list)
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
            while True:  # a sample at once: a short phase still has one
                channel = await self._sample(connection, channel)
                await asyncio.sleep(self.interval_s)
        finally:
            await connection.close()

    async def _sample(
        self, connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel
    ) -> aio_pika.abc.AbstractChannel:
        """One sample of everything; the channel to use next (a failed passive declare
        closes the one it ran on)."""
        self._last = await self._scrape()
        for snapshot in self._last:
            for (name, labels), value in snapshot.items():
                if name == "crmsync_provider_budget_utilisation":
                    provider = dict(labels)["provider"]
                    self._budget_max[provider] = max(self._budget_max.get(provider, 0.0), value)
        self._db.append(await self._connections())
        ready: dict[str, int] = {}
        for name in self.queues:
            if channel.is_closed:
                channel = await connection.channel()
            try:
                queue = await channel.declare_queue(self.namespace + name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                continue
            ready[name] = queue.declaration_result.message_count or 0
            self._ready.setdefault(name, []).append(ready[name])
        busy_s = {
            name: sum(total(x, "crmsync_handler_seconds_sum", queue=name) for x in self._last)
            for name in self.queues
        }
        self._series.append((time.monotonic(), busy_s, ready))
        return channel

    def _in_flight_backlogged(self, name: str) -> float | None:
        """Handlers of ``name`` in flight per syncer while messages waited for them (both
        ends of a sample interval with a backlog); None if there was never one."""
        spans = [
            (b[1][name] - a[1][name]) / (b[0] - a[0])
            for a, b in zip(self._series, self._series[1:], strict=False)
            if a[2].get(name, 0) >= 1 and b[2].get(name, 0) >= 1 and b[0] > a[0]
        ]
        return round(sum(spans) / len(spans) / len(self.syncers), 1) if spans else None

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
        # A busy connection either runs (on a CPU), waits inside Postgres (a lock, the
        # WAL, I/O: its wait_event), or is idle in a transaction: the syncer holds it
        # while it works between two statements.
        for r in await self.pool.fetch(
            """
            SELECT CASE WHEN state = 'active' AND wait_event_type IS NULL THEN 'running'
                        WHEN state = 'active' THEN 'waiting'
                        ELSE 'held by the syncer' END AS doing,
                   wait_event_type || ':' || wait_event AS wait, count(*) AS n
            FROM pg_stat_activity
            WHERE datname = $1 AND application_name = 'crmsync-syncer' AND state <> 'idle'
            GROUP BY 1, 2
            """,
            main,
        ):
            self._doing[r["doing"]] += r["n"]
            if r["doing"] == "waiting":
                self._waits[r["wait"]] += r["n"]
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
                "in_flight_backlogged": self._in_flight_backlogged(name),
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
            # Mean busy connections by what they were doing, and the top waits.
            "db_busy_doing": {k: round(v / len(db), 1) for k, v in self._doing.most_common()},
            "db_waits": {k: round(v / len(db), 1) for k, v in self._waits.most_common(4)},
            "budget_utilisation_max": {k: round(v, 2) for k, v in self._budget_max.items()},
            "provider_actions": outcomes,
        }
