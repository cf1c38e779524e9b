"""Coalesce concurrent per-key requests into batch calls.

Many handlers each call ``await coalescer.submit(key)``; the coalescer collects the
keys, makes ONE ``flush(keys)`` call for up to ``max_batch`` of them, and wakes each
caller with its own key's outcome. A key submitted twice while waiting is flushed once.
This is how 250 concurrent credit changes become three HubSpot batch calls instead of
250 single updates.

**One flush in flight.** While a flush runs, new keys gather for the next one, which
starts when the running one has finished and ``max_batch`` keys wait, or no key has
arrived for ``window_s``, or the oldest has waited ``max_wait_s``. So a key is never in
two flushes at once (a later push of a contact can never be overtaken by an earlier one
still on the wire), and a slow provider or a loaded host that delivers the keys as a
trickle makes batches bigger, not calls more numerous: calls are bounded by
``keys / max_batch`` plus one per ``max_wait_s`` of continuous arrivals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)

# flush(keys) -> per-key outcome: None = done, an exception = that key failed.
Flush = Callable[[list[K]], Awaitable[Mapping[K, BaseException | None]]]


class Coalescer(Generic[K]):
    """Batches ``submit`` calls, one flush at a time.

    Args:
        flush: called with up to ``max_batch`` distinct keys; raising fails them all.
        max_batch: keys per flush (HubSpot batch endpoints take 100).
        window_s: a quiet gap, in seconds: a batch is flushed once no key has joined it
            for this long.
        max_wait_s: the longest the oldest key waits while keys keep arriving, in
            seconds; 10 times ``window_s`` by default.
    """

    def __init__(
        self,
        flush: Flush[K],
        *,
        max_batch: int = 100,
        window_s: float = 0.2,
        max_wait_s: float | None = None,
    ) -> None:
        self.flush = flush
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_wait_s = 10 * window_s if max_wait_s is None else max_wait_s
        self._pending: dict[K, list[asyncio.Future[None]]] = {}
        # loop times at which the oldest and the newest pending key arrived
        self._oldest_at = 0.0
        self._newest_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self.flushes = 0

    async def submit(self, key: K) -> None:
        """Wait until a flush containing ``key`` has finished; raise its failure."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        now = loop.time()
        if not self._pending:
            self._oldest_at = now
        self._newest_at = now
        self._pending.setdefault(key, []).append(future)
        self._schedule()
        await future

    def offer(self, key: K) -> None:
        """Add ``key`` to the next flush without waiting for it (fire and forget: the
        caller has made the work durable elsewhere, and a failed flush is retried there)."""
        now = asyncio.get_running_loop().time()
        if not self._pending:
            self._oldest_at = now
        self._newest_at = now
        self._pending.setdefault(key, [])
        self._schedule()

    def _schedule(self) -> None:
        """Start the next flush now, arm the window's timer, or wait for the running one."""
        if self._running is not None or not self._pending:
            return  # _flush_done schedules again
        loop = asyncio.get_running_loop()
        due = min(self._newest_at + self.window_s, self._oldest_at + self.max_wait_s)
        if len(self._pending) >= self.max_batch or loop.time() >= due:
            self._flush_now()
        elif self._timer is None:  # a timer that fires early just looks again
            self._timer = loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        keys = list(self._pending)[: self.max_batch]
        batch = {key: self._pending.pop(key) for key in keys}
        if self._pending:  # the rest of a full batch goes as soon as this one is done
            self._oldest_at = self._newest_at = asyncio.get_running_loop().time() - self.max_wait_s
        self._running = asyncio.create_task(self._run(batch))
        self._running.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._running = None
        # _run hands every failure to the waiters; anything left is a bug of ours,
        # and must be seen, not left to "Task exception was never retrieved".
        if not task.cancelled() and task.exception() is not None:
            log.error("coalescer.flush_crashed", exc_info=task.exception())
        self._schedule()

    async def _run(self, batch: dict[K, list[asyncio.Future[None]]]) -> None:
        self.flushes += 1
        try:
            outcomes = await self.flush(list(batch))
            for key, futures in batch.items():
                error = outcomes.get(key)
                for future in futures:
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        except BaseException as exc:  # every waiter must wake, whatever happened
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def drain(self) -> None:
        """Flush everything waiting, one batch after another, and wait (shutdown)."""
        while self._pending or self._running is not None:
            if self._running is None:
                self._flush_now()
            running = self._running
            if running is not None:
                await asyncio.gather(running, return_exceptions=True)
