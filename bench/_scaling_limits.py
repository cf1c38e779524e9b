"""What limited a scaling phase: a verdict from :class:`_scaling_sampler.Sampler`'s figures.

:func:`diagnose` names the likely limits, most certain first: a saturated machine or
syncer CPU; the slowest stage (a queue with messages waiting) and what its handlers
wait for (prefetch when each is close to its latency floor, else a pool connection or
a CPU); pools, provider budgets and leases near their ceilings; or no backlog at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# Shares of a ceiling above which we call it reached.
NEAR = 0.8
# A syncer above this much of one core is CPU-bound (asyncio runs on one core).
SYNCER_CPU_BOUND = 85.0


@dataclass
class Limits:
    """The ceilings a phase runs under (per syncer unless said otherwise)."""

    syncers: int
    prefetch: dict[str, int]
    db_pool_max: int
    queue_db_connections: int
    crm_pool_max: int


def _causes(figures: dict[str, Any], limits: Limits) -> list[str]:
    """What busy handlers of a phase were most likely waiting for, besides a CPU."""
    n = limits.syncers
    causes = []
    if limits.crm_pool_max and figures["crm_busy_mean"] >= NEAR * n * limits.crm_pool_max:
        causes.append("a CRM connection")
    if figures["db_busy_mean"] >= NEAR * n * limits.queue_db_connections:
        causes.append(f"a main-pool connection (its queue's share; {_doing(figures)})")
    return causes


def _doing(figures: dict[str, Any]) -> str:
    """``"busy connections: 4.1 held by the syncer, 2.0 waiting (IO:WALSync 1.5), ..."``"""
    doing = figures.get("db_busy_doing") or {}
    parts = [f"{v} {k}" for k, v in doing.items()]
    waits = ", ".join(f"{k} {v}" for k, v in (figures.get("db_waits") or {}).items())
    text = "busy connections: " + (", ".join(parts) or "none")
    return text + (f" ({waits})" if waits else "")


def _stage(name: str, q: dict[str, Any], prefetch: int, floor_ms: float, causes: list[str]) -> str:
    """Why a queue with a backlog does not drain faster."""
    waiting = f"{q['ready_mean']:.0f} messages waiting on average"
    busy = q["in_flight_backlogged"] or q["in_flight_per_syncer"]
    mean = q["handler_mean_ms"] or 0.0
    if busy < NEAR * prefetch:
        return (
            f"{name} has a backlog ({waiting}) with only {busy:.0f} of {prefetch} handlers busy "
            f"per syncer: messages reach the consumers slower than slots free up"
        )
    if floor_ms > 0 and mean <= 1.5 * floor_ms + 20:
        return (
            f"prefetch of {name} ({waiting}): all {prefetch} handlers per syncer busy, each "
            f"{mean:.0f} ms of which {floor_ms:.0f} ms is latency: raise CRMSYNC_PREFETCH_COUNT "
            f"or CRMSYNC_QUEUE_PREFETCH='{{\"{name}\": ...}}'"
        )
    waits = " or ".join(causes) if causes else "a CPU (nothing metered was near its ceiling)"
    return (
        f"{name} is the slowest stage ({waiting}): all {prefetch} handlers per syncer busy, "
        f"{mean:.0f} ms each against a latency floor of {floor_ms:.0f} ms, waiting for {waits}"
    )


def diagnose(
    figures: dict[str, Any], cpu: dict[str, float], limits: Limits, *, floor_ms: dict[str, float]
) -> list[str]:
    """The likely limits of one phase, most certain first (never empty).

    A queue with messages waiting is the phase's slowest stage; whether its prefetch,
    a pool or a CPU holds it back is read from its handlers: all busy and each close to
    its latency floor means prefetch; all busy and much slower means they wait for a
    pool connection (when one is near its ceiling) or a CPU.

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
    causes = _causes(figures, limits)
    backlogged = {k: q for k, q in figures["queues"].items() if q["ready_mean"] >= 1}
    for name, q in backlogged.items():
        prefetch = limits.prefetch.get(name, 0)
        found.append(_stage(name, q, prefetch, floor_ms.get(name, 0.0), causes))
    pool = n * limits.db_pool_max
    if figures["db_busy_mean"] >= NEAR * pool or figures["db_busy_max"] >= pool:
        found.append(
            f"main DB pool: {figures['db_busy_mean']} of {n} x {limits.db_pool_max} connections "
            f"busy on average (max {figures['db_busy_max']}; {_doing(figures)}): raise "
            f"CRMSYNC_DB_POOL_MAX_SIZE if they mostly run or are held, not if they wait"
        )
    elif figures["db_busy_mean"] >= NEAR * n * limits.queue_db_connections:
        found.append(
            f"a queue's share of the DB pool: {figures['db_busy_mean']} connections busy on "
            f"average, {n} x {limits.queue_db_connections} per queue: raise "
            f"CRMSYNC_QUEUE_DB_CONNECTIONS (and CRMSYNC_DB_POOL_MAX_SIZE)"
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
    if not backlogged:
        found.append(
            "no backlog: every queue of the path was empty most of the time, so the syncers "
            "kept up with what reached them (the load or an upstream stage set the pace)"
        )
    return found
