"""Intake's (3) and (4) on a private RabbitMQ node per WAL size: p99, max and stalls.

Runs ``bench/intake.py --own-broker`` ``--runs`` times (3: issue 11 wants p99 at half
rate ≤ 20 ms in three consecutive runs) for each ``--wal-sizes`` value, each run its
own process on a fresh node, ``raft.wal_max_size_bytes`` set unless the value is
``default`` (RabbitMQ's own, 512 MiB: https://www.rabbitmq.com/docs/quorum-queues,
"How Memory, WAL and Segments Files Interact"). Then one row per run: p99 and max of
(3) (the broker alone, no intake) and (4) (intake at half rate), their stalls, how many
of those overlapped a WAL flush, the rollovers, and the share of the phase spent
flushing (what "during a flush" would be by chance). Every other option goes to
``bench/intake.py`` as it is (``--duration``, ``--skip-peer``, more
``--broker-setting``...). Each run's figures are in ``<output-dir>/intake-wal-*.json``.

    .venv/bin/python bench/wal_compare.py [--wal-sizes default,134217728,67108864]
                                          [--runs 3] [intake.py options]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import RESULTS

INTAKE = Path(__file__).with_name("intake.py")
AIM_P99_MS = 20.0


def wal_size(text: str) -> str:
    """``default``, bytes (``67108864``) or MiB (``64MiB``) → ``default`` or bytes."""
    if text == "default":
        return text
    number = text.removesuffix("MiB")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: want default, bytes or e.g. 64MiB")
    return str(int(number) * (2**20 if text.endswith("MiB") else 1))


def _run_intake(command: list[str]) -> int:
    """Run one bench; on our SIGTERM or Ctrl-C let it clean up (it stops its node) first."""
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.wait()  # Ctrl-C reached it too (same process group): it is cleaning up
        raise
    except SystemExit:  # our SIGTERM: pass it on, then wait for its cleanup
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        raise


def _row(label: str, run: int, results: dict[str, Any]) -> str:
    phases, stalls = results["phases"], results["stalls"]
    cells = [f"{label:>10} {run:>3}"]
    for key in ("ceiling", "half_rate"):
        p, s = phases[key], stalls[key]
        during = sum(1 for x in s["stalls"] if x["during_flush"])
        rollovers = sum(1 for f in s["flushes"] or [] if f["rolled_at"] is not None)
        flushing = 100 * (s["flushing_fraction"] or 0)
        cells.append(
            f"{p['p99_ms']:7.1f} {p['extra']['max_ms']:7.1f} {len(s['stalls']):>5} "
            f"{during:>5} {rollovers:>4} {flushing:>5.0f} %"
        )
    return " │ ".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wal-sizes",
        type=lambda text: [wal_size(t) for t in text.split(",")],
        default=["default", str(128 * 2**20), str(64 * 2**20)],
        help="comma-separated: default, bytes or NMiB (default,128MiB,64MiB)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per size (3)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args, passed_on = parser.parse_known_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    rows: list[str] = []
    met: dict[str, list[bool]] = {}
    try:
        for size in args.wal_sizes:
            label = "default" if size == "default" else f"{int(size) / 2**20:g} MiB"
            for run in range(1, args.runs + 1):
                output = args.output_dir / f"intake-wal-{size}-{run}.json"
                setting = [] if size == "default" else [f"raft.wal_max_size_bytes={size}"]
                command = [sys.executable, str(INTAKE), "--own-broker", "--output", str(output)]
                command += [x for s in setting for x in ("--broker-setting", s)] + passed_on
                print(f"\n=== WAL {label}, run {run} of {args.runs}", flush=True)
                if _run_intake(command) != 0:
                    print(f"run failed; its figures are not in the table ({output})")
                    continue
                results = json.loads(output.read_text())
                rows.append(_row(label, run, results))
                half = results["phases"]["half_rate"]["p99_ms"]
                met.setdefault(label, []).append(half <= AIM_P99_MS)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        _print_table(rows, met)
    return 0


def _print_table(rows: list[str], met: dict[str, list[bool]]) -> None:
    if not rows:
        return
    phase = f"{'p99 ms':>7} {'max ms':>7} {'stall':>5} {'in-fl':>5} {'roll':>4} {'flush':>7}"
    print(f"\n{'':>14} │ {'(3) ceiling, no intake':<{len(phase)}} │ (4) intake at half rate")
    print(f"{'WAL':>10} run │ {phase} │ {phase}")
    print("\n".join(rows))
    print(
        "stall: spans over the --stall-ms threshold; in-fl: of those, during a WAL flush; "
        "roll: WAL rollovers; flush: share of the phase spent flushing (chance level)."
    )
    for label, runs in met.items():
        three = any(all(runs[i : i + 3]) for i in range(len(runs) - 2))
        verdict = "met" if three else "NOT met"
        print(
            f"WAL {label}: p99 at half rate ≤ {AIM_P99_MS:g} ms in {sum(runs)} of {len(runs)} "
            f"run(s); three consecutive: {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
