"""bench/_stalls.py: stalls from latency samples, WAL rollovers lined up with them."""

from __future__ import annotations

import time
from pathlib import Path

from bench._stalls import Stall, WalEvent, WalWatcher, find_stalls, phase_block, report_lines

ORIGIN = 1000.0  # a phase's measured start, monotonic seconds


def at(t_s: float, latency_ms: float) -> tuple[float, float]:
    """A sample started ``t_s`` after the phase's start, ``latency_ms`` long."""
    return ORIGIN + t_s, latency_ms / 1000


def test_overlapping_slow_requests_make_one_stall_and_fast_ones_none() -> None:
    samples = [
        at(0.0, 2),
        at(1.00, 150),  # 1.00-1.15
        at(1.10, 80),  # 1.10-1.18: overlaps the first, same stall
        at(1.05, 5),  # fast, inside the stall: not counted
        at(3.00, 30),  # a second stall
        at(4.0, 20),  # at the threshold: not over it
    ]

    stalls = find_stalls(samples, origin=ORIGIN, threshold_ms=20)

    assert stalls == [Stall(1.0, 180.0, 150.0, 2), Stall(3.0, 30.0, 30.0, 1)]


def test_no_samples_no_stalls() -> None:
    assert find_stalls([], origin=ORIGIN, threshold_ms=20) == []


def watcher_with(*events: tuple[float, str, str, int]) -> WalWatcher:
    """A watcher, never started, that saw ``events``: (s after the start, kind, file, size)."""
    watcher = WalWatcher(Path("/nonexistent"))
    watcher.events = [WalEvent(ORIGIN + t, kind, name, size) for t, kind, name, size in events]
    return watcher


def test_a_stall_during_a_wal_flush_is_named_with_the_file_being_flushed() -> None:
    watcher = watcher_with(
        (-5.0, "new", "00000003.wal", 0),  # before the phase: not in its window
        (2.0, "new", "00000004.wal", 4096),
        (2.5, "gone", "00000003.wal", 67_108_864),
    )
    samples = [at(t / 10, 3) for t in range(100)] + [at(2.2, 180), at(7.0, 60)]

    block = phase_block(samples, origin=ORIGIN, duration_s=10, threshold_ms=20, watcher=watcher)

    assert [s["during_flush"] for s in block["stalls"]] == ["00000003.wal", None]
    assert block["flushes"] == [
        {"wal": "00000003.wal", "size_bytes": 67_108_864, "rolled_at": 2.0, "deleted_at": 2.5}
    ]
    # 2.0-2.5 s widened by a poll each side, of 10 s
    assert block["flushing_fraction"] == 0.07
    text = "\n".join(report_lines("(3) ceiling", block))
    assert "2 stall(s) over 20 ms, worst 180 ms; 1 WAL rollover(s); 1 stall(s) during" in text
    assert (
        "stall at   2.20 s,  180.0 ms (max 180.0 ms, 1 slow), during the flush of 00000003.wal"
        in text
    )
    assert "WAL 00000003.wal, 64 MiB: rolled over at 2.00 s, flushed and deleted at 2.50 s" in text


def test_a_flush_that_began_before_the_phase_counts_from_its_start() -> None:
    watcher = watcher_with((0.3, "gone", "00000007.wal", 536_870_912))

    block = phase_block(
        [at(0.1, 90)], origin=ORIGIN, duration_s=2, threshold_ms=20, watcher=watcher
    )

    assert block["flushes"] == [
        {"wal": "00000007.wal", "rolled_at": None, "size_bytes": 536_870_912, "deleted_at": 0.3}
    ]
    assert block["stalls"][0]["during_flush"] == "00000007.wal"
    assert "rolled over before the phase" in "\n".join(report_lines("(4)", block))


def test_without_a_watched_wal_the_report_says_so() -> None:
    block = phase_block([at(0.5, 40)], origin=ORIGIN, duration_s=1, threshold_ms=20, watcher=None)

    assert block["wal"] is None
    assert block["stalls"][0]["during_flush"] is None
    assert "WAL not watched (--own-broker watches it)" in report_lines("(4)", block)[0]


def test_the_watcher_sees_a_wal_file_appear_and_the_old_one_go(tmp_path: Path) -> None:
    (tmp_path / "00000001.wal").write_bytes(b"x" * 100)
    (tmp_path / "meta.dets").write_bytes(b"")  # not a WAL file

    with WalWatcher(tmp_path, interval_s=0.01).running() as watcher:
        (tmp_path / "00000002.wal").write_bytes(b"")
        (tmp_path / "00000001.wal").unlink()
        deadline = time.monotonic() + 10
        while len(watcher.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    assert [(e.kind, e.name, e.size_bytes) for e in watcher.events] == [
        ("new", "00000002.wal", 0),
        ("gone", "00000001.wal", 100),
    ]
