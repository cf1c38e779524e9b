"""The crmsync processes of a chaos run: one :class:`Slot` per replica, restartable.

A slot is a role (``intake``, ``syncer``, ``scheduler``, ``sandbox``) with a fixed port
and one log file that every process started in the slot appends to (JSON lines, level
INFO, the product's default), so log volume over a window is the file's growth. A slot
remembers what happened to its processes: started, killed by the bench, or exited by
itself (with the exit code), each with its time on the run's clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import PeakRss, free_port, peak_rss, wait_http_ok

CRMSYNC = str(Path(sys.executable).parent / "crmsync")
READY_PATHS = {
    "sandbox": "/_sandbox/health",
    "intake": "/readyz",
    "syncer": "/readyz",
    "scheduler": "/readyz",
}


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The bench's environment without any ``CRMSYNC_*`` of its own, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}, **extra}


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path, timeout_s: float = 300) -> str:
    """``crmsync <args>`` to completion (migrate, seed-crm); its output.

    Raises:
        RuntimeError: it exited non-zero.
    """
    done = subprocess.run(
        [CRMSYNC, *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"crmsync {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Slot:
    """One replica: ``crmsync <role> --port <port>``, restartable in place."""

    name: str
    role: str
    env: dict[str, str]
    cwd: Path
    clock: Any  # () -> seconds since the run started
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    # Peak RSS of each process of the slot, read just before we kill or stop it.
    memory: list[PeakRss] = field(default_factory=list)
    # Exits we caused (SIGKILL or SIGTERM), so poll() does not count them as crashes.
    _expected: set[int] = field(default_factory=set)

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, wait_ready_s: float | None = 60) -> None:
        """Start a new process in the slot; wait for its ready route unless told not to."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [CRMSYNC, self.role, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.cwd,  # no .env here
                env=clean_env(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops us
            )
        self.events.append({"at": round(self.clock(), 2), "what": "started", "pid": self.proc.pid})
        if wait_ready_s is not None:
            self.wait_ready(wait_ready_s)

    def wait_ready(self, timeout_s: float) -> None:
        try:
            wait_http_ok(f"{self.url}{READY_PATHS[self.role]}", timeout_s, alive=self.alive)
        except RuntimeError as exc:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} not ready: {exc}\n{tail}") from exc

    def _read_memory(self) -> None:
        assert self.proc is not None
        name = f"{self.name} (pid {self.proc.pid})"
        self.memory.append(peak_rss(name, self.proc.pid, aim=self.role != "sandbox"))

    def kill(self) -> None:
        """SIGKILL the process (no clean-up at all)."""
        if self.alive():
            assert self.proc is not None
            self._read_memory()
            self._expected.add(self.proc.pid)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.events.append(
                {"at": round(self.clock(), 2), "what": "killed", "pid": self.proc.pid}
            )

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it lingers."""
        if not self.alive():
            return
        assert self.proc is not None
        self._read_memory()
        self._expected.add(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def poll_exit(self) -> dict[str, Any] | None:
        """If the process exited by itself since the last look, record and return that."""
        if self.proc is None or self.proc.poll() is None or self.proc.pid in self._expected:
            return None
        self._expected.add(self.proc.pid)
        event = {
            "at": round(self.clock(), 2),
            "what": "exited by itself",
            "pid": self.proc.pid,
            "code": self.proc.returncode,
        }
        self.events.append(event)
        return event

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0


def log_window(path: Path, start: int, end: int) -> dict[str, int]:
    """Lines, bytes, WARNING-and-up lines and lines with a traceback in ``[start, end)``."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            chunk = f.read(max(0, end - start))
    except OSError:
        return {"lines": 0, "bytes": 0, "warnings": 0, "tracebacks": 0}
    lines = chunk.splitlines()
    return {
        "lines": len(lines),
        "bytes": len(chunk),
        "warnings": sum(
            1 for ln in lines if any(f'"level": "{lv}"'.encode() in ln for lv in _LOUD)
        ),
        "tracebacks": sum(1 for ln in lines if b'"exception": ' in ln or b"Traceback" in ln),
    }


_LOUD = ("warning", "error", "critical", "exception")


class Clock:
    """Seconds since the run started (monotonic)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
