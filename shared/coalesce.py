"""Coalesce concurrent per-key requests into batch calls.

Many handlers each call ``await coalescer.submit(key)``; the coalescer collects the
keys for at most ``window_s`` seconds (or until ``max_batch`` are waiting), makes ONE
``flush(keys)`` call, and wakes each caller with its own key's outcome. A key
submitted twice while waiting is flushed once. This is how 250 concurrent credit
changes become three HubSpot batch calls instead of 250 single updates.
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
    """Batches ``submit`` calls.

    Args:
        flush: called with up to ``max_batch`` distinct keys; raising fails them all.
        max_batch: keys per flush (HubSpot batch endpoints take 100).
        window_s: how long the first key of a batch may wait for company, in seconds.
    """

    def __init__(self, flush: Flush[K], *, max_batch: int = 100, window_s: float = 0.2) -> None:
        self.flush = flush
        self.max_batch = max_batch
        self.window_s = window_s
        self._pending: dict[K, list[asyncio.Future[None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.flushes = 0

    async def submit(self, key: K) -> None:
        """Wait until a flush containing ``key`` has finished; raise its failure."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        if len(self._pending) >= self.max_batch:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._flush_now)
        await future

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        task = asyncio.create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        # _run hands every failure to the waiters; anything left is a bug of ours,
        # and must be seen, not left to "Task exception was never retrieved".
        if not task.cancelled() and task.exception() is not None:
            log.error("coalescer.flush_crashed", exc_info=task.exception())

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
        """Flush what is waiting and wait for running flushes (shutdown)."""
        self._flush_now()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
