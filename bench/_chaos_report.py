"""The chaos bench's printed report: one table per run, then each phase's details."""

from __future__ import annotations

from typing import Any

from _chaos_faults import PHASE_TITLES
from _common import peak_rss_report

AIM_KEYS = ("lost", "duplicated", "wrong_pg", "wrong_provider")


def aim_met(results: dict[str, Any]) -> bool:
    """0 lost, 0 duplicated, 0 wrong (Postgres and providers) in every phase of every run,
    every phase quiescent, and every requested run completed."""
    runs = results["runs"]
    complete = all(not r.get("interrupted") and not r.get("failed") for r in runs)
    phases = len(results["config"]["phases"])
    return (
        bool(runs)
        and complete
        and len(runs) == results["config"].get("runs_asked", len(runs))
        and all(len(r["phases"]) == phases for r in runs)
        and all(
            not any(p["totals"][k] for k in AIM_KEYS) and p["quiescence"]["quiet"]
            for r in runs
            for p in r["phases"]
        )
    )


def _row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def table(run: dict[str, Any]) -> list[str]:
    head = [
        "phase",
        "sent",
        "accepted",
        "applied",
        "lost",
        "dup PG",
        "wrong PG",
        "wrong Shopify",
        "wrong C7",
        "wrong HubSpot",
        "extra calls S/C7",
        "dead",
        "quiet",
    ]
    rows = [head]
    for p in run["phases"]:
        t, pr, c = p["totals"], p["providers"], p["calls"]
        q = p["quiescence"]
        rows.append(
            [
                p["phase"],
                t["sent"],
                t["accepted"],
                t["applied"],
                t["lost"],
                t["duplicated"],
                t["wrong_pg"],
                pr["shopify"]["wrong"],
                pr["commerce7"]["wrong"],
                pr["hubspot"]["wrong"],
                f"{c['shopify']['extra']}/{c['commerce7']['extra']}",
                sum(p["dead_lettered"].values()),
                f"{q['waited_s']:.0f} s" if q["quiet"] else f"NO ({q['waited_s']:.0f} s)",
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    return [_row(r, widths) for r in rows]


def _fault_line(p: dict[str, Any]) -> str:
    if p["phase"] == "kill":
        return f"{p['kills']} SIGKILLs of syncers over {p['load_s']:.0f} s"
    return (
        "; ".join(
            f"{w['what']}: down {w['end'] - w['start']:.1f} s (from t={w['start']:.0f} s)"
            if w["end"] > w["start"]
            else f"{w['what']} (t={w['start']:.0f} s)"
            for w in p["windows"]
        )
        or "none"
    )


def details(p: dict[str, Any]) -> list[str]:
    out = [f"{p['phase']}: {PHASE_TITLES[p['phase']]}: {_fault_line(p)}"]
    out.append(
        f"  stream: {p['requests']} requests ({p['replays']} replays), {p['attempts']} attempts, "
        f"never accepted {p['never_accepted']}, refused 4xx {p['refused_4xx']}"
        + (
            f", 2xx while the broker was down {p['accepted_while_broker_down']}"
            if p["accepted_while_broker_down"] is not None
            else ""
        )
    )
    for name, s in p["streams"].items():
        out.append(
            f"  {name:<10} sent {s['sent']}, accepted {s['accepted']}, applied {s['applied']}, "
            f"lost {s['lost']}, duplicated {s['duplicated']}, wrong in Postgres {s['wrong_pg']}"
            + (f"; provider actions {s['actions']}" if "actions" in s else "")
        )
        for why, n in sorted(s.get("why", {}).items()):
            out.append(f"      {n} x {why} (e.g. {s['examples'][why]})")
    for name, v in p["providers"].items():
        out.append(f"  at {name:<9} wrong {v['wrong']} of {v.get('customers', v.get('contacts'))}")
        for why, n in sorted(v.get("why", {}).items()):
            out.append(f"      {n} x {why} (e.g. {v['examples'][why]})")
    for name in ("shopify", "commerce7"):
        c = p["calls"][name]
        out.append(
            f"  calls {name:<9} {c['calls']} (minimum {c['minimum']}, extra {c['extra']}: reads "
            f"{c['reads']}, writes beyond the minimum {c['extra_writes']}; non-2xx {c['failed']}, "
            f"unanswered {c['unanswered']})"
        )
    out.append(f"  calls hubspot   {p['calls']['hubspot']['calls']}")
    if p["dead_lettered"]:
        out.append(f"  dead-lettered: {p['dead_lettered']}")
    q = p["quiescence"]
    if not q["quiet"]:
        out.append(f"  NOT quiescent after {q['waited_s']:.0f} s: {q['left']}")
    if p["not_ready_after_phase"]:
        out.append(f"  not ready after the phase: {p['not_ready_after_phase']}")
    for e in p["process_exits"]:
        out.append(f"  {e['slot']} exited by itself at t={e['at']:.0f} s (code {e['code']})")
    s = p["scheduler"]
    out.append(
        f"  scheduler: {s['runs']} scheduled runs {s['by_status']}, doubled ticks "
        f"{s['doubled_ticks']}, stuck {s['stuck']}, redelivered {s['redelivered']}, minutes "
        f"without a run {s['minutes_without_run']} of {s['minutes']}"
    )
    logs = p["logs"]
    if logs:
        out.append(f"  log lines per minute during the fault window ({logs['window_s']:.0f} s):")
        for slot, r in logs.items():
            if slot == "window_s":
                continue
            out.append(
                f"      {slot:<12} {r['lines_per_min']:>9,.0f} lines  "
                f"{r['bytes_per_min'] / 1024:>9,.0f} KB  {r['warnings_per_min']:>8,.0f} "
                f"warning+  {r['tracebacks_per_min']:>7,.0f} tracebacks"
            )
    return out


def report(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [
        f"chaos bench: {len(results['runs'])} run(s), phases {', '.join(cfg['phases'])}; sizes per "
        f"phase {cfg['sizes']}; broker down {cfg['broker_down_s']:g} s twice, Postgres down "
        f"{cfg['pg_outage_s']:g} s, CRMSYNC_RETRY_UNIT_S {cfg['retry_unit_s']:g}"
    ]
    for run in results["runs"]:
        setup = run["setup"]
        lines += [
            "",
            f"run {run['run']} (RabbitMQ {setup.get('rabbitmq_version')} on "
            f":{setup['ports']['amqp']}, PostgreSQL on :{setup['ports']['postgres']}, "
            "2 syncers, 2 schedulers)",
        ]
        if run.get("interrupted") or run.get("failed"):
            lines.append(
                f"  (run {'interrupted' if run.get('interrupted') else 'failed'}: "
                f"{run.get('failed', 'the phases below finished')})"
            )
        lines += table(run)
        for p in run["phases"]:
            lines += ["", *details(p)]
        if "peak_rss" in run:
            lines += ["", peak_rss_report(run["peak_rss"])]
        proof = run.get("judge_proof")
        if proof:
            verdict = "every planted defect counted" if proof["ok"] else "MISSED defects"
            lines += [
                "",
                f"  judge proof: {verdict}: moved {proof['moved']}, expected {proof['expected']}",
                f"    planted: {proof['planted']}",
            ]
    verdict = "met" if results["aim_met"] else "NOT met"
    lines += [
        "",
        f"aim: 0 lost, 0 duplicated, 0 wrong, in {len(results['runs'])} consecutive "
        f"run(s): {verdict}; {results['elapsed_s']:.0f} s in all",
    ]
    return "\n".join(lines)
