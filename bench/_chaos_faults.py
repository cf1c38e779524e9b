"""The faults of the chaos bench, one per phase, and the watcher that restarts crashes.

Each fault coroutine runs beside the phase's load and returns the windows it made:
``{"what", "start", "end"}`` on the run's clock, where ``start`` is the moment the
component was down and ``end`` the moment it served again. ``mark(label)`` snapshots
the log files at the start and end of the phase's fault window (for log volume).

- ``kill``: every 2-5 s, SIGKILL one of the running syncers and start it again 0.5 s
  later (without waiting for it), until the load is over.
- ``broker``: ``rabbitmqctl stop`` (graceful), down ``broker_down_s``, start; 10 s later
  SIGKILL of the node's ``beam.smp``, down ``broker_down_s``, start.
- ``pg``: ``pg_ctl stop -m fast``, down ``pg_outage_s``, ``pg_ctl start``; half-way
  through, ``syncer-b`` and ``scheduler-b`` are killed and started again (while
  Postgres is still down: they must wait for it, not exit).
- ``calm``: nothing (a control phase).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _chaos_infra import PgCluster, RabbitNode
from _chaos_procs import Slot

FAULTS_START_S = 5.0  # into the load, so the stream is flowing when the fault lands
RESTARTED_DURING_PG_OUTAGE = ("syncer-b", "scheduler-b")


@dataclass
class FaultContext:
    rabbit: RabbitNode
    pg: PgCluster
    slots: list[Slot]
    clock: Callable[[], float]
    mark: Callable[[str], None]
    load_start: float
    load_s: float
    broker_down_s: float
    pg_outage_s: float
    rng: random.Random

    @property
    def syncers(self) -> list[Slot]:
        return [s for s in self.slots if s.role == "syncer"]


async def kill_syncers(ctx: FaultContext) -> list[dict[str, Any]]:
    windows = []
    await asyncio.sleep(FAULTS_START_S / 2)
    ctx.mark("start")
    while ctx.clock() < ctx.load_start + ctx.load_s:
        await asyncio.sleep(ctx.rng.uniform(2, 5))
        alive = [s for s in ctx.syncers if s.alive()]
        if not alive:
            continue
        victim = ctx.rng.choice(alive)
        at = ctx.clock()
        victim.kill()
        await asyncio.sleep(0.5)
        victim.start(wait_ready_s=None)
        windows.append(
            {"what": f"SIGKILL {victim.name}", "start": round(at, 2), "end": round(ctx.clock(), 2)}
        )
    ctx.mark("end")
    return windows


async def _outage(
    ctx: FaultContext, what: str, down: Any, up: Any, seconds: float, back_at: Any = None
) -> dict[str, Any]:
    """Take a component down, wait, bring it up. ``start``: down for sure (the stop
    returned); ``end``: serving again (``back_at()``, a monotonic time, when the start
    goes on after the component already serves, as RabbitMQ's boot does)."""
    await asyncio.to_thread(down)
    start = ctx.clock()
    await asyncio.sleep(seconds)
    await asyncio.to_thread(up)
    end = ctx.clock() if back_at is None else back_at() - (time.monotonic() - ctx.clock())
    return {
        "what": what,
        "start": round(start, 2),
        "end": round(end, 2),
        "up_again_s": round(ctx.clock() - end, 2),
    }


async def broker_faults(ctx: FaultContext) -> list[dict[str, Any]]:
    def listening() -> float:
        return ctx.rabbit.listening_at

    rabbit = ctx.rabbit
    await asyncio.sleep(FAULTS_START_S)
    ctx.mark("start")
    stop = await _outage(
        ctx,
        "broker stop (rabbitmqctl stop)",
        rabbit.stop,
        rabbit.start,
        ctx.broker_down_s,
        listening,
    )
    await asyncio.sleep(10)
    kill = await _outage(
        ctx, "broker SIGKILL (beam.smp)", rabbit.kill, rabbit.start, ctx.broker_down_s, listening
    )
    ctx.mark("end")
    return [stop, kill]


async def pg_outage(ctx: FaultContext) -> list[dict[str, Any]]:
    await asyncio.sleep(FAULTS_START_S)
    ctx.mark("start")
    await asyncio.to_thread(ctx.pg.stop)
    start = ctx.clock()
    await asyncio.sleep(ctx.pg_outage_s / 2)
    # A crash and restart while Postgres is down: the new process must wait, not exit.
    restarted = [s for s in ctx.slots if s.name in RESTARTED_DURING_PG_OUTAGE]
    at = ctx.clock()
    for slot in restarted:
        slot.kill()
        slot.start(wait_ready_s=None)
    await asyncio.sleep(ctx.pg_outage_s / 2)
    await asyncio.to_thread(ctx.pg.start)
    ctx.mark("end")
    return [
        {
            "what": "Postgres stopped (pg_ctl stop -m fast)",
            "start": round(start, 2),
            "end": round(ctx.clock(), 2),
        },
        {
            "what": f"SIGKILL and restart of {', '.join(s.name for s in restarted)} while "
            "Postgres is down",
            "start": round(at, 2),
            "end": round(at, 2),
        },
    ]


async def calm(ctx: FaultContext) -> list[dict[str, Any]]:
    await asyncio.sleep(FAULTS_START_S)
    ctx.mark("start")
    await asyncio.sleep(max(0.0, ctx.load_s - FAULTS_START_S))
    ctx.mark("end")
    return []


FAULTS = {"kill": kill_syncers, "broker": broker_faults, "pg": pg_outage, "calm": calm}
PHASE_TITLES = {
    "kill": "kill -9 of syncers every 2-5 s",
    "broker": "broker stop, then broker kill -9",
    "pg": "Postgres stopped",
    "calm": "no fault (control)",
}


async def watch(slots: list[Slot], exits: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Restart any process that exited by itself, after 5 s doubling to 30 s per slot
    (as a supervisor such as Kubernetes would), and record each exit in ``exits``."""
    backoff = {s.name: 5.0 for s in slots}
    due: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        for slot in slots:
            event = slot.poll_exit()
            if event is not None:
                exits.append({"slot": slot.name, **event})
                due[slot.name] = loop.time() + backoff[slot.name]
                backoff[slot.name] = min(30.0, backoff[slot.name] * 2)
            if slot.name in due and loop.time() >= due[slot.name] and not slot.alive():
                del due[slot.name]
                slot.start(wait_ready_s=None)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
