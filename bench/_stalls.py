"""Latency stalls of a bench phase, and the RabbitMQ WAL rollovers seen meanwhile.

A phase records one ``(started_at, latency_s)`` sample per request or publish
(``time.monotonic()`` seconds, the same clock in every process on Linux). A *stall* is
a span during which requests took longer than a threshold: each slow sample covers
``[started_at, started_at + latency]``, and overlapping spans merge into one stall, so
32 publishes held up by the same broker pause make one stall, not 32.

:class:`WalWatcher` polls a RabbitMQ node's quorum-queue data dir (``*.wal`` files) in
a thread and records when a new WAL file appears (a rollover: the old one reached
``raft.wal_max_size_bytes`` and goes to the segment writer) and when the old one is
deleted (its entries are in the segment files by then). Between the two the segment
writer flushes: a stall that overlaps that span is "during a flush", and the share of
the phase spent flushing says how often that would happen by chance alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# How often the watcher looks (s): a file's appearance is seen up to this late.
POLL_S = 0.1
# Stalls printed per phase; all of them are in the JSON.
PRINT_AT_MOST = 12


@dataclass(frozen=True)
class Stall:
    """Requests slower than the threshold, overlapping in time.

    ``start_s`` is seconds since the phase's measured start; ``duration_ms`` from the
    first slow request's start to the last one's answer; ``max_ms`` the slowest;
    ``count`` how many were slow.
    """

    start_s: float
    duration_ms: float
    max_ms: float
    count: int


def find_stalls(
    samples: Iterable[tuple[float, float]], *, origin: float, threshold_ms: float
) -> list[Stall]:
    """The stalls among ``samples`` (``(started_at, latency_s)``, monotonic seconds).

    ``origin`` is the phase's measured start (monotonic s): stall times are relative to it.
    """
    threshold_s = threshold_ms / 1000
    slow = sorted((t, t + lat, lat) for t, lat in samples if lat > threshold_s)
    stalls: list[Stall] = []
    span: list[float] = []  # start, end, max latency, count of the stall being built

    def close() -> None:
        start, end, worst, count = span
        duration_ms = round(1000 * (end - start), 1)
        stalls.append(
            Stall(round(start - origin, 3), duration_ms, round(1000 * worst, 1), int(count))
        )

    for start, end, lat in slow:
        if span and start <= span[1]:
            span[1], span[2], span[3] = max(span[1], end), max(span[2], lat), span[3] + 1
            continue
        if span:
            close()
        span = [start, end, lat, 1]
    if span:
        close()
    return stalls


@dataclass(frozen=True)
class WalEvent:
    """A ``*.wal`` file appeared (``new``) or disappeared (``gone``) at ``at`` (monotonic s);
    ``size_bytes`` is the last size seen (``gone``: about the size it rolled over at)."""

    at: float
    kind: str
    name: str
    size_bytes: int


class WalWatcher:
    """Polls ``directory`` for ``*.wal`` files every :data:`POLL_S` s in a daemon thread.

    Use as a context manager (or ``start()``/``stop()``); ``events`` grows meanwhile. The
    files present at the start are the baseline, not events. A missing directory counts
    as empty (the node creates it on start).

    Raises:
        RuntimeError: from ``stop()``, if the polling thread died (with its error).
    """

    def __init__(self, directory: Path, interval_s: float = POLL_S) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.events: list[WalEvent] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _scan(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(".wal"):
                        try:
                            sizes[entry.name] = entry.stat().st_size
                        except FileNotFoundError:
                            continue  # deleted between listing and stat
        except FileNotFoundError:
            pass
        return sizes

    def _run(self, seen: dict[str, int]) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                now_seen = self._scan()
                now = time.monotonic()
                for name in sorted(now_seen.keys() - seen.keys()):
                    self.events.append(WalEvent(now, "new", name, now_seen[name]))
                for name in sorted(seen.keys() - now_seen.keys()):
                    self.events.append(WalEvent(now, "gone", name, seen[name]))
                seen = now_seen
        except BaseException as exc:  # seen by stop(), never silent
            self._error = exc

    def start(self) -> WalWatcher:
        """Take the baseline (before returning: files made after this are events), then poll."""
        self._thread = threading.Thread(
            target=self._run, args=(self._scan(),), name="wal-watcher", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"the WAL watcher died: {self._error!r}") from self._error

    @contextmanager
    def running(self) -> Iterator[WalWatcher]:
        """Started, stopped on the way out."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def between(self, start: float, end: float) -> list[WalEvent]:
        return [e for e in self.events if start <= e.at <= end]


def flushes(wal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair each rollover with the deletion of the file it replaced: ``[{"wal": old file,
    "size_bytes", "rolled_at", "deleted_at"}]`` (s; None where it fell outside the
    window). While the old file exists after a rollover, the segment writer is copying
    its entries to segment files: the ``flush``, from ``rolled_at`` to ``deleted_at``.

    ``wal`` is :func:`phase_block`'s list of events (times relative to the phase); WAL
    files are numbered (``00000004.wal`` follows ``00000003.wal``).
    """
    found: dict[str, dict[str, Any]] = {}
    for e in wal:
        if e["kind"] == "new" and e["name"].split(".")[0].isdigit():
            number = int(e["name"].split(".")[0])
            old = f"{number - 1:0{len(e['name']) - 4}d}.wal"
            found.setdefault(old, {"wal": old, "size_bytes": None, "deleted_at": None})
            found[old]["rolled_at"] = e["at"]
        elif e["kind"] == "gone":
            found.setdefault(e["name"], {"wal": e["name"], "rolled_at": None})
            found[e["name"]].update(size_bytes=e["size_bytes"], deleted_at=e["at"])
    return sorted(
        found.values(), key=lambda f: f["rolled_at"] if f["rolled_at"] is not None else -1
    )


def _flush_span(flush: dict[str, Any], end_s: float) -> tuple[float, float]:
    """A flush's span in phase seconds, widened by one poll each side (when the watcher
    sees a file is up to :data:`POLL_S` after it happened)."""
    start = flush["rolled_at"] if flush["rolled_at"] is not None else 0.0
    end = flush["deleted_at"] if flush["deleted_at"] is not None else end_s
    return start - POLL_S, end + POLL_S


def phase_block(
    samples: Sequence[tuple[float, float]],
    *,
    origin: float,
    duration_s: float,
    threshold_ms: float,
    watcher: WalWatcher | None,
) -> dict[str, Any]:
    """The JSON block of one phase: its stalls and, when a WAL was watched, the WAL
    events and flushes of its window (s since ``origin``), which stalls overlapped a
    flush (``during_flush``: the old file's name) and the share of the phase spent
    flushing (``flushing_fraction``: what "during a flush" would be by chance alone)."""
    stalls = find_stalls(samples, origin=origin, threshold_ms=threshold_ms)
    block: dict[str, Any] = {
        "threshold_ms": threshold_ms,
        "samples": len(samples),
        "stalls": [{**asdict(s), "during_flush": None} for s in stalls],
        "wal": None,
        "flushes": None,
        "flushing_fraction": None,
    }
    if watcher is None:
        return block
    # The window runs past the measured seconds by the slowest answer's time.
    end_s = duration_s + max((lat for _, lat in samples), default=0.0)
    wal = [
        {**asdict(e), "at": round(e.at - origin, 3)}
        for e in watcher.between(origin, origin + end_s)
    ]
    found = flushes(wal)
    spans = [_flush_span(f, end_s) for f in found]
    for stall in block["stalls"]:
        s_end = stall["start_s"] + stall["duration_ms"] / 1000
        for flush, (lo, hi) in zip(found, spans, strict=True):
            if stall["start_s"] <= hi and s_end >= lo:
                stall["during_flush"] = flush["wal"]
                break
    covered = sum(min(hi, duration_s) - max(lo, 0.0) for lo, hi in spans if hi > 0)
    block.update(wal=wal, flushes=found, flushing_fraction=round(max(0.0, covered) / duration_s, 3))
    return block


def report_lines(label: str, block: dict[str, Any]) -> list[str]:
    """What the bench prints of one phase's block: a summary line, the worst stalls (by
    max latency, in time order) and the WAL flushes."""
    stalls, found = block["stalls"], block["flushes"]
    head = f"{label}: {len(stalls)} stall(s) over {block['threshold_ms']:g} ms"
    if stalls:
        head += f", worst {max(s['max_ms'] for s in stalls):.0f} ms"
    if found is None:
        head += "; WAL not watched (--own-broker watches it)"
    else:
        rollovers = sum(1 for f in found if f["rolled_at"] is not None)
        during = sum(1 for s in stalls if s["during_flush"])
        head += (
            f"; {rollovers} WAL rollover(s); {during} stall(s) during a WAL flush, "
            f"which took {100 * block['flushing_fraction']:.0f} % of the phase"
        )
    lines = [head]
    worst = sorted(sorted(stalls, key=lambda s: -s["max_ms"])[:PRINT_AT_MOST], key=_start)
    if len(stalls) > PRINT_AT_MOST:
        lines.append(f"  the {PRINT_AT_MOST} worst (all {len(stalls)} are in the JSON):")
    for s in worst:
        text = (
            f"  stall at {s['start_s']:6.2f} s, {s['duration_ms']:6.1f} ms "
            f"(max {s['max_ms']:.1f} ms, {s['count']} slow)"
        )
        if s["during_flush"]:
            text += f", during the flush of {s['during_flush']}"
        lines.append(text)
    for f in found or []:
        rolled = "before the phase" if f["rolled_at"] is None else f"at {f['rolled_at']:.2f} s"
        deleted = "after it" if f["deleted_at"] is None else f"at {f['deleted_at']:.2f} s"
        size = "" if f["size_bytes"] is None else f", {f['size_bytes'] / 2**20:,.0f} MiB"
        lines.append(f"  WAL {f['wal']}{size}: rolled over {rolled}, flushed and deleted {deleted}")
    return lines


def _start(stall: dict[str, Any]) -> float:
    return float(stall["start_s"])
