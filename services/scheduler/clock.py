"""Time, injectable: the tick loop asks a :class:`Clock`, never ``datetime.now``.

:class:`SystemClock` is the real one. :class:`ManualClock` only moves when told to,
so tests and the benchmark drive hundreds of simulated ticks without sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the scheduler needs of time."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time and ``asyncio.sleep``."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that stands still until :meth:`advance` / :meth:`set` moves it.

    Sleepers wake as soon as the clock reaches their deadline; any number of
    schedulers may share one clock.

    Args:
        start: the initial time (timezone-aware).
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)  # a zero sleep still yields, as asyncio.sleep(0) does
        while self._now < deadline:
            moved = self._moved
            await moved.wait()

    def set(self, when: datetime) -> None:
        """Move to ``when`` (never backwards) and wake the sleepers it concerns."""
        when = when.astimezone(UTC)
        if when < self._now:
            raise ValueError("a ManualClock never goes backwards")
        self._now = when
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds``; returns the new time."""
        self.set(self._now + timedelta(seconds=seconds))
        return self._now
