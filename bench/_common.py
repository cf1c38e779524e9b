"""Helpers shared by the benchmark scripts: ports, child processes, CPU time, wrk.

Nothing here knows about crmsync; ``bench/<service>.py`` composes these.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(url: str, timeout_s: float, alive: Any = None) -> None:
    """Poll ``url`` until it answers 200.

    Args:
        alive: optional callable returning False once the server process has died,
            so a crash fails at once instead of after ``timeout_s``.

    Raises:
        RuntimeError: the server died or never answered 200 in time.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"server for {url} exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s ({last})")


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """SIGTERM ``proc`` (a graceful stop for aiohttp's ``run_app``), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (0.0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the ")" that ends the command name; utime and stime are 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _cpu_ticks() -> dict[str, int]:
    """The whole machine's CPU ticks so far, from the first line of /proc/stat.

    ``tasks``: user + nice + system, what processes used (the part a process's own
    utime + stime is taken from); ``irq``: hard and soft interrupts (loopback
    networking is mostly here); ``steal``: taken by the hypervisor; ``all``.
    """
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return {"tasks": user + nice + system, "irq": irq + softirq, "steal": steal, "all": sum(v)}


def idle_percent(seconds: float = 0.5) -> float:
    """How idle the whole machine was over ``seconds``, in % (100 = every CPU idle)."""
    t0 = _cpu_ticks()
    time.sleep(seconds)
    t1 = _cpu_ticks()
    busy = sum(t1[k] - t0[k] for k in ("tasks", "irq", "steal"))
    return 100 - 100 * busy / max(1, t1["all"] - t0["all"])


def wait_until_quiet(pid: int, below_percent: float = 5.0, timeout_s: float = 20.0) -> float:
    """Wait until process ``pid`` uses under ``below_percent`` of a core over 0.5 s.

    Used to let the broker finish the work a purge leaves behind before measuring.
    Returns the seconds waited (``timeout_s`` at most).
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        cpu0 = cpu_seconds(pid)
        time.sleep(0.5)
        if 100 * (cpu_seconds(pid) - cpu0) / 0.5 < below_percent:
            break
    return time.monotonic() - started


def pid_of(command_name: str) -> int | None:
    """The pid of a running process whose ``comm`` is ``command_name`` (for reading only)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == command_name:
                    return int(entry.name)
    return None


@dataclass
class CpuMeter:
    """CPU use of some processes over a span of wall time, in % of one core.

    ``start()`` then ``stop()``; processes are named, e.g. ``{"server": pid}``.
    ``machine`` is what all processes together used, in the same unit (200 = two
    cores flat out), so ``machine`` minus the named processes is everything else;
    ``irq`` and ``steal`` are interrupts and what the hypervisor took.
    """

    pids: dict[str, int]
    _cpu0: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0
    _ticks0: dict[str, int] = field(default_factory=dict)
    percent: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    irq: float = 0.0
    steal: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._ticks0 = _cpu_ticks()
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        self.percent = {
            name: round(100 * (cpu_seconds(pid) - self._cpu0[name]) / wall, 1)
            for name, pid in self.pids.items()
        }
        ticks = _cpu_ticks()
        # /proc/stat ticks are summed over every CPU: scale to % of one core.
        scale = 100 * (os.cpu_count() or 1) / max(1, ticks["all"] - self._ticks0["all"])
        self.machine, self.irq, self.steal = (
            round(scale * (ticks[k] - self._ticks0[k]), 1) for k in ("tasks", "irq", "steal")
        )
        return self.percent


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------------------- wrk

WRK_MISSING = (
    "wrk is not installed. Install it (Debian/Ubuntu: `sudo apt-get install -y wrk`), "
    "or pass --loadgen aiohttp to use a Python load generator in a separate process "
    "(closed loop; it may itself be the bottleneck, so the figures are a lower bound)."
)

# Appended to every wrk script: one machine-readable line with the summary and the
# latency percentiles (microseconds), which wrk's human output rounds.
_WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_post_script(body_path: Path, headers: dict[str, str]) -> str:
    """A wrk Lua script that POSTs ``body_path``'s raw bytes with ``headers``."""
    lines = [
        f"local f = assert(io.open({json.dumps(str(body_path))}, 'rb'))",
        "wrk.body = f:read('*a')",
        "f:close()",
        'wrk.method = "POST"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _WRK_DONE


@dataclass
class WrkResult:
    """What one wrk run measured. Latencies in milliseconds."""

    requests: int
    duration_s: float
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: dict[str, int]
    cpu_percent: float
    output: str


def run_wrk(
    url: str, script: Path, *, connections: int, duration_s: float, threads: int = 1
) -> WrkResult:
    """Run ``wrk --latency`` against ``url`` and parse its output.

    Raises:
        RuntimeError: wrk failed or printed no summary.
    """
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        output = proc.stdout.read()
        # wait4 rather than wait: it also gives the CPU time wrk used.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    marker = next((ln for ln in output.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or marker is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{output}")
    data = json.loads(marker.removeprefix("WRK_JSON "))
    duration = data["duration_us"] / 1e6
    errors = {
        k.removesuffix("_errors").removesuffix("s"): data[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        if data[k]
    }
    return WrkResult(
        requests=data["requests"],
        duration_s=duration,
        rate=data["requests"] / duration,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        errors=errors,
        cpu_percent=round(100 * (usage.ru_utime + usage.ru_stime) / duration, 1),
        output=output.replace(marker + "\n", ""),
    )


# ------------------------------------------------------------------ memory

# Issue 11, item 6: each service's peak resident memory during the benches.
AIM_RSS_MB = 150.0


def _vm_hwm_kb(pid: int) -> int | None:
    """``VmHWM`` (peak resident set, kB) of ``pid`` from /proc/<pid>/status; None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The field after the state that follows the ")" ending the command name.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


@dataclass
class PeakRss:
    """Peak resident memory of one started process and its descendants, in MB.

    MB here is 2^20 bytes (what ``ps -o rss`` / 1024 gives). Read from Linux's
    ``VmHWM`` ("peak resident set size", proc(5)), so it must be read while the
    process still runs, just before stopping it. For a process with children (e.g.
    ``crmsync intake --workers N``) ``largest_child_mb`` and ``sum_mb`` (itself + all
    descendants) are filled in; the sum counts pages the children share with their
    parent (copy-on-write after fork) once per process, so it is an upper bound.
    ``peak_mb`` is the largest single process, which is what :data:`AIM_RSS_MB` bounds;
    ``aim`` is False for processes the aim is not about (a provider sandbox).
    """

    name: str
    pid: int
    own_mb: float | None
    children: int = 0
    largest_child_mb: float | None = None
    sum_mb: float | None = None
    aim: bool = True

    @property
    def peak_mb(self) -> float | None:
        values = [v for v in (self.own_mb, self.largest_child_mb) if v is not None]
        return max(values) if values else None

    @property
    def met(self) -> bool | None:
        """Under :data:`AIM_RSS_MB`; None if not measured or not aimed at."""
        peak = self.peak_mb
        return None if peak is None or not self.aim else peak < AIM_RSS_MB

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "own_mb": self.own_mb,
            "children": self.children,
            "largest_child_mb": self.largest_child_mb,
            "sum_mb": self.sum_mb,
            "peak_mb": self.peak_mb,
            "aim_mb": AIM_RSS_MB if self.aim else None,
            "met": self.met,
        }


def peak_rss(name: str, pid: int, *, aim: bool = True) -> PeakRss:
    """Measure :class:`PeakRss` of ``pid`` (named ``name``, e.g. ``"intake:8080"``) now."""

    def mb(kb: int | None) -> float | None:
        return None if kb is None else round(kb / 1024, 1)

    own = _vm_hwm_kb(pid)
    kids = [kb for kb in map(_vm_hwm_kb, descendants(pid)) if kb is not None]
    if not kids:
        return PeakRss(name, pid, mb(own), aim=aim)
    return PeakRss(
        name, pid, mb(own), len(kids), mb(max(kids)), mb((own or 0) + sum(kids)), aim=aim
    )


def peak_rss_results(records: Sequence[PeakRss]) -> dict[str, Any]:
    """The JSON block benches write under ``"peak_rss"``: every process and the verdict."""
    verdicts = [r.met for r in records if r.met is not None]
    return {
        "aim_mb": AIM_RSS_MB,
        "processes": [r.as_dict() for r in records],
        "all_met": all(verdicts) if verdicts else None,
    }


def peak_rss_report(block: dict[str, Any]) -> str:
    """One printed line per process from :func:`peak_rss_results`'s block, verdict first."""
    aim = block["aim_mb"]
    verdict = {True: "met", False: "NOT met", None: "not measured"}[block["all_met"]]
    lines = [f"peak RSS of each crmsync process (VmHWM; aim < {aim:g} MB each): {verdict}"]
    for p in block["processes"]:
        own = "gone" if p["own_mb"] is None else f"{p['own_mb']:.1f} MB"
        text = f"  {p['name']:<24} {own:>9}"
        if p["children"]:
            text += (
                f"; {p['children']} child(ren), largest {p['largest_child_mb']:.1f} MB, "
                f"sum {p['sum_mb']:.1f} MB"
            )
        if p["aim_mb"] is None:
            text += "  (no aim: a test double)"
        elif p["met"] is False:
            text += "  NOT met"
        lines.append(text)
    return "\n".join(lines)
