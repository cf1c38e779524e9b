"""The scaling bench's figures: ratios N ÷ first N against the aims, and the printed report."""

from __future__ import annotations

from typing import Any

# Throughput of 2 and of 4 times the syncers ÷ that of one, at least (issue 11, item 5).
AIMS = {2: 1.7, 4: 3.0}


def ratios(rounds: list[dict[str, Any]], key: str, rate: str) -> dict[str, dict[str, Any]]:
    """``{"2": {"ratio": 1.9, "aim": 1.7, "met": True}, ...}`` against the first N."""
    base = rounds[0][key][rate]
    found = {}
    for r in rounds[1:]:
        n = r["syncers"] // rounds[0]["syncers"]
        value = round(r[key][rate] / base, 2) if base and r[key][rate] else None
        aim = AIMS.get(n)
        met = None if aim is None or value is None else value >= aim
        found[str(r["syncers"])] = {"ratio": value, "aim": aim, "met": met}
    return found


def report(r: dict[str, Any]) -> str:
    c = r["config"]
    rows = [
        f"scaling: {c['orders']} orders and {c['profiles']:,} profiles per round, provider "
        f"and CRM latency {c['latency_ms']:g} ms",
        "  ceilings: I/O = slots in flight ÷ latency; CPU = cores ÷ crmsync's CPU per item",
        f"  {'syncers':>7} {'actions/s':>10} {'(end to end)':>12} {'I/O':>6} {'CPU':>6}"
        f" {'profiles/s':>11} {'I/O':>6} {'CPU':>6}",
    ]
    for x in r["rounds"]:
        o, p = x["orders"], x["packages"]
        rows.append(
            f"  {x['syncers']:>7} {o['steady_per_s'] or 0:>10.1f} "
            f"{o['end_to_end_per_s'] or 0:>12.1f} {o['io_ceiling_per_s'] or 0:>6.0f} "
            f"{o['cpu_ceiling_per_s'] or 0:>6.0f} {p['profiles_per_s'] or 0:>11.1f} "
            f"{p['io_ceiling_per_s'] or 0:>6.0f} {p['cpu_ceiling_per_s'] or 0:>6.0f}"
        )
    for path, per_n in r["ratios"].items():
        for n, v in per_n.items():
            aim = f"aim ≥ {v['aim']}: {'met' if v['met'] else 'NOT met'}" if v["aim"] else "no aim"
            rows.append(f"  {path} {n} ÷ {r['rounds'][0]['syncers']}: {v['ratio']}  ({aim})")
    lim = r["limits_configured"]
    rows.append(
        f"  per syncer: prefetch {lim['prefetch']}, DB pool {lim['db_pool_max']} "
        f"({lim['queue_db_connections']} per queue), CRM pool {lim['crm_pool_max']}; "
        f"Shopify budget {c['shopify_rate_per_s']:g}/s"
    )
    rows.append("  what was near its ceiling (likely limit first):")
    for x in r["rounds"]:
        for path in ("orders", "packages"):
            for i, finding in enumerate(x[path]["limits"]):
                head = f"N={x['syncers']} {path}:" if i == 0 else ""
                rows.append(f"    {head:<16} {finding}")
    rows.append(
        "  figures: per queue handler mean, handlers in flight per syncer (while backlogged),"
        " messages ready; connections busy (whole phase, all syncers)"
    )
    for x in r["rounds"]:
        for path, phase in (("orders", x["orders"]), ("packages", x["packages"])):
            f = phase["figures"]
            queues = "; ".join(
                f"{name.removeprefix('syncer.')} {q['handler_mean_ms']} ms, "
                f"{q['in_flight_per_syncer']} ({q['in_flight_backlogged'] or '-'}) in flight, "
                f"ready {q['ready_mean']}"
                for name, q in f["queues"].items()
            )
            budget = {k: v for k, v in f["budget_utilisation_max"].items() if v}
            rows.append(
                f"    N={x['syncers']} {path}: {queues}; DB busy {f['db_busy_mean']} "
                f"(max {f['db_busy_max']}, open {f['db_open_max']}; "
                f"{f.get('db_busy_doing') or {}} {f.get('db_waits') or {}}), CRM busy "
                f"{f['crm_busy_mean']}, budget used {budget or 0}"
            )
    rows.append(
        f"  idle before the run {r['environment']['idle_percent_before']:.0f} %; "
        f"ran {r['elapsed_s']:.0f} s"
    )
    return "\n".join(rows)
