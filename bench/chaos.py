"""The chaos bench: does crmsync lose, double or get wrong anything under faults?

Each run starts its own RabbitMQ node and PostgreSQL cluster on ports of their own
(never the machine's 5672 and 5432), migrates, seeds a CRM database, and runs
``crmsync sandbox``, ``intake``, two ``syncer`` and two ``scheduler`` processes
against them (``bench/_chaos_run.py``). Then, one phase per fault, it sends a mixed
stream (``bench/_chaos_load.py``: Shopify and Commerce7 orders that upgrade Silver to
Gold, credit notifications in shuffled version order, bookings, logins, replays)
while it injects the fault (``bench/_chaos_faults.py``):

- ``kill``: SIGKILL of a syncer every 2-5 s, restarted 0.5 s later;
- ``broker``: a graceful broker stop, then a SIGKILL of the broker, each down a while;
- ``pg``: Postgres stopped for ``--pg-outage-s`` (60 s);
- ``calm``: no fault (a control phase, not run unless asked for).

After each phase it waits for quiescence (queues, outbox, provider actions and HubSpot
pushes empty), judges Postgres and the providers against the ledger of what was
accepted (``bench/_chaos_judge.py``), and prints, per phase: accepted, applied, lost,
duplicated in Postgres, wrong in Postgres, wrong at a provider, extra provider calls,
dead letters, and log lines per minute per process during the fault. At the end of a
run it plants known defects and checks the judge counts them (``--no-prove`` skips).
Aim: 0 lost, 0 duplicated, 0 wrong, in ``--runs`` consecutive runs.

    .venv/bin/python bench/chaos.py --quick          # ~3-4 minutes, smaller and shorter
    .venv/bin/python bench/chaos.py                  # ~10 minutes per run
    .venv/bin/python bench/chaos.py --runs 3 --phases kill,broker,pg,calm
    .venv/bin/python bench/chaos.py --self-test      # the judge against broken states
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _chaos_faults import FAULTS
from _chaos_load import Sizes
from _chaos_prove import prove_live
from _chaos_report import aim_met, report
from _chaos_run import Options, Run
from _chaos_selftest import self_test
from _common import RESULTS, peak_rss_results


async def one_run(run: Run, prove: bool, result: dict[str, Any]) -> None:
    """Fill ``result`` as the run goes, so an interrupted run keeps its finished phases."""
    print(f"run {run.number}: starting RabbitMQ, Postgres and crmsync in {run.tmp} ...", flush=True)
    result["setup"] = await asyncio.to_thread(run.start)
    emails = await run.login_emails()
    per_phase = run.opts.sizes.logins
    result["phases"] = []
    for index, phase in enumerate(run.opts.phases, start=1):
        print(f"run {run.number}: phase {phase} ...", flush=True)
        started = time.monotonic()
        chunk = emails[(index - 1) * per_phase : index * per_phase]
        figures = await run.phase(phase, index, chunk)
        figures["elapsed_s"] = round(time.monotonic() - started, 1)
        t = figures["totals"]
        print(
            f"  {phase}: accepted {t['accepted']}, lost {t['lost']}, duplicated "
            f"{t['duplicated']}, wrong in Postgres {t['wrong_pg']}, wrong at providers "
            f"{t['wrong_provider']}, extra calls {t['extra_calls']} "
            f"({figures['elapsed_s']:.0f} s)",
            flush=True,
        )
        result["phases"].append(figures)
    if prove and result["phases"]:
        result["judge_proof"] = await prove_live(run)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="consecutive runs (1)")
    parser.add_argument(
        "--phases",
        default="kill,broker,pg",
        help=f"comma-separated, in order, from {','.join(FAULTS)} (kill,broker,pg)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small stream, short faults, ~3-4 minutes"
    )
    parser.add_argument("--shopify", type=int, help="Shopify customers per phase (150; quick 40)")
    parser.add_argument(
        "--commerce7", type=int, help="Commerce7 customers per phase (60; quick 20)"
    )
    parser.add_argument("--students", type=int, help="students with credits per phase (200; 60)")
    parser.add_argument("--versions", type=int, help="credit notifications per student (6; 4)")
    parser.add_argument("--bookings", type=int, help="bookings per phase (100; quick 30)")
    parser.add_argument("--logins", type=int, help="logins per phase (100; quick 30)")
    parser.add_argument("--kill-s", type=float, help="length of the kill phase's load (60; 25)")
    parser.add_argument("--broker-down-s", type=float, help="each broker outage (15; quick 6)")
    parser.add_argument("--pg-outage-s", type=float, help="the Postgres outage (60; quick 15)")
    parser.add_argument(
        "--retry-unit-s",
        type=float,
        help="CRMSYNC_RETRY_UNIT_S of the syncers (default: pg outage / 2.5, "
        "at least 4, so a handler's 4 retries outlast the outage)",
    )
    parser.add_argument(
        "--quiet-timeout-s",
        type=float,
        help="longest wait for quiescence after a phase (300; quick 90)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the stream (1)")
    parser.add_argument("--keep", action="store_true", help="keep the run's files (logs)")
    parser.add_argument(
        "--no-prove",
        action="store_true",
        help="skip planting defects at the end of each run to prove the judge",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="only check the judge against broken states (no processes)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "chaos.json")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in args.phases if p not in FAULTS]
    if unknown:
        parser.error(f"unknown phase(s) {unknown}; pick from {list(FAULTS)}")
    return args


def options(args: argparse.Namespace) -> Options:
    q = args.quick

    def pick(value: float | None, full: float, quick: float) -> Any:
        return value if value is not None else (quick if q else full)

    sizes = Sizes(
        shopify=pick(args.shopify, 150, 40),
        commerce7=pick(args.commerce7, 60, 20),
        students=pick(args.students, 200, 60),
        versions=pick(args.versions, 6, 4),
        bookings=pick(args.bookings, 100, 30),
        logins=pick(args.logins, 100, 30),
    )
    outage = pick(args.pg_outage_s, 60, 15)
    return Options(
        phases=args.phases,
        sizes=sizes,
        kill_s=pick(args.kill_s, 60, 25),
        broker_down_s=pick(args.broker_down_s, 15, 6),
        pg_outage_s=outage,
        retry_unit_s=args.retry_unit_s or max(4.0, round(outage / 2.5, 1)),
        quiet_timeout_s=pick(args.quiet_timeout_s, 300, 90),
        seed=args.seed,
        keep=args.keep,
    )


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        failures = self_test()
        for failure in failures:
            print(f"  FAIL {failure}")
        print("judge self-test: " + ("passed" if not failures else f"{len(failures)} failure(s)"))
        return 1 if failures else 0
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Even when started in the background (where a shell ignores SIGINT), Ctrl-C stops us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    opts = options(args)
    started = time.monotonic()
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            **vars(opts),
            "sizes": vars(opts.sizes),
            "quick": args.quick,
            "runs_asked": args.runs,
        },
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": [],
    }
    code = 0
    for number in range(1, args.runs + 1):
        run = Run(number, opts)
        result: dict[str, Any] = {"run": number, "phases": []}
        try:
            asyncio.run(one_run(run, not args.no_prove, result))
        except (KeyboardInterrupt, SystemExit) as exc:
            print("\ninterrupted; stopping what the bench started", file=sys.stderr)
            result["interrupted"] = True
            code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
        except RuntimeError as exc:
            print(f"run {number} failed: {exc}", file=sys.stderr)
            result["failed"] = str(exc)
            code = 1
        finally:
            previous = {
                s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                run.close()
                memory = [m for slot in run.slots for m in slot.memory]
                result["peak_rss"] = peak_rss_results(memory)
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        if "setup" in result:
            results["runs"].append(result)
        if code:
            break
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["aim_met"] = aim_met(results)
    print()
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"figures written to {args.output}")
    return code


if __name__ == "__main__":
    sys.exit(main())
