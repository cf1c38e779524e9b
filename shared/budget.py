"""How much of a provider's request budget this process uses: the scaling hint.

A provider's budget is the ceiling of everything that calls it: HubSpot gives one
private app 190 requests per rolling 10 s (reference/hubspot/LIMITS.md §1) whatever
the number of syncers, so each of N replicas paces at 190 / N; Shopify's REST budget is
2 requests/s on a standard plan (reference/shopify/ADMIN_API.md §C). Once a provider's
budget is what limits a queue, more syncers add no throughput.

:class:`BudgetMeter` counts the requests a limiter let through and exports
``crmsync_provider_budget_utilisation{provider}``: the share of this replica's budget
it used over the last window, computed when Prometheus scrapes (so it falls back to 0
when the calls stop). Near 1 on every replica means the provider is the ceiling.
:func:`metered` wraps a client's ``AsyncLimiter`` so that every call it admits feeds
the meter::

    limiter = metered(limiter_per_s(2.0), "shopify", max_requests=2.0, window_s=1.0)
    limiter = metered_per_s("shopify", 2.0)  # the same, shorter
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter
from prometheus_client import Gauge

# Shortest window the utilisation is averaged over, in seconds: a 1 s budget measured
# over 1 s would jump between 0 and 1 with every call.
MIN_MEASURE_WINDOW_S = 10.0

PROVIDER_BUDGET_UTILISATION = Gauge(
    "crmsync_provider_budget_utilisation",
    "Share of this replica's request budget at the provider used over the last window "
    "(requests let through / requests allowed, 0-1; near 1 means the provider's rate "
    "limit is the ceiling and more syncers will not help).",
    ["provider"],
)


class BudgetMeter:
    """Requests started against one provider budget, over a sliding window.

    Args:
        provider: the metric's label (``"hubspot"``, ``"shopify"``, ...).
        max_requests: requests this replica may start per ``window_s`` (its share of
            the provider's budget: HubSpot's 190 per 10 s / replicas, for example).
        window_s: the budget's window in seconds. The utilisation is measured over
            ``max(window_s, MIN_MEASURE_WINDOW_S)``, the budget scaled to it.
        clock: monotonic seconds (tests pass a manual clock).

    Raises:
        ValueError: a budget or window that is not positive.
    """

    def __init__(
        self,
        provider: str,
        *,
        max_requests: float,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests <= 0 or window_s <= 0:
            raise ValueError("max_requests and window_s must be positive")
        self.provider = provider
        self.measure_s = max(window_s, MIN_MEASURE_WINDOW_S)
        self.allowed = max_requests * self.measure_s / window_s
        self._clock = clock
        self._starts: deque[tuple[float, float]] = deque()

    def record(self, amount: float = 1.0) -> None:
        """Count ``amount`` requests started now (a limiter slot taken)."""
        self._starts.append((self._clock(), amount))
        self._trim()

    def utilisation(self) -> float:
        """Requests started in the last window ÷ requests allowed in it (0 and up; a
        limiter keeps it at most about 1)."""
        self._trim()
        return sum(amount for _, amount in self._starts) / self.allowed

    def export(self) -> BudgetMeter:
        """Make this meter the one ``crmsync_provider_budget_utilisation{provider}``
        reads (one client per provider per process; the latest one wins)."""
        PROVIDER_BUDGET_UTILISATION.labels(self.provider).set_function(self.utilisation)
        return self

    def _trim(self) -> None:
        oldest = self._clock() - self.measure_s
        while self._starts and self._starts[0][0] <= oldest:
            self._starts.popleft()


class MeteredLimiter(AsyncLimiter):
    """An ``AsyncLimiter`` that reports every admitted request to a :class:`BudgetMeter`."""

    def __init__(self, max_rate: float, time_period: float, *, meter: BudgetMeter) -> None:
        super().__init__(max_rate, time_period)
        self.meter = meter

    async def acquire(self, amount: float = 1) -> None:
        """Wait for capacity (``AsyncLimiter.acquire``), then count the request."""
        await super().acquire(amount)
        self.meter.record(amount)


def metered(
    limiter: AsyncLimiter, provider: str, *, max_requests: float, window_s: float
) -> MeteredLimiter:
    """``limiter``'s pacing (same bucket size and period), feeding the exported meter of
    ``provider`` whose budget is ``max_requests`` per ``window_s`` seconds.

    Use it on a fresh limiter, before any call has gone through it.
    """
    meter = BudgetMeter(provider, max_requests=max_requests, window_s=window_s).export()
    return MeteredLimiter(limiter.max_rate, limiter.time_period, meter=meter)


def metered_per_s(provider: str, rate_per_s: float) -> MeteredLimiter:
    """``limiter_per_s(rate_per_s)`` (shared/clients/http.py), metered as ``provider``."""
    from shared.clients.http import limiter_per_s

    return metered(limiter_per_s(rate_per_s), provider, max_requests=rate_per_s, window_s=1.0)


def metered_rolling(provider: str, max_requests: float, window_s: float) -> MeteredLimiter:
    """``rolling_window_limiter(max_requests, window_s)`` (shared/clients/hubspot_policy.py),
    metered as ``provider`` against the same budget."""
    from shared.clients.hubspot_policy import rolling_window_limiter

    limiter = rolling_window_limiter(max_requests, window_s)
    return metered(limiter, provider, max_requests=max_requests, window_s=window_s)


# Added to the window a sliding-log limiter waits for: requests leave in order of their
# start but reach the provider with some jitter; 10 ms keeps that jitter inside the budget.
SLIDING_GUARD_S = 0.01


class SlidingWindowLimiter(AsyncLimiter):
    """At most ``max_requests`` starts in any ``window_s + SLIDING_GUARD_S`` seconds,
    and a steady rate of that much (a log of the last starts, not a bucket).

    ``rolling_window_limiter`` (a bucket of 1/20 of the budget refilling at the rest)
    also never exceeds the budget but runs at 95 % of it when saturated; this one runs
    at ``max_requests / (window_s + 10 ms)`` (99 % of 100 per 1 s). Waiters are served in
    arrival order. ``meter`` (optional) counts every admitted request; ``clock`` and
    ``sleep`` (monotonic seconds) are for tests.

    Raises:
        ValueError: a budget below 1 request or a window that is not positive.
    """

    def __init__(
        self,
        max_requests: float,
        window_s: float,
        *,
        meter: BudgetMeter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_requests < 1 or window_s <= 0:
            raise ValueError("max_requests must be at least 1 and window_s positive")
        super().__init__(max_requests, window_s)
        self.meter = meter
        self._size = int(max_requests)
        self._span = window_s + SLIDING_GUARD_S
        self._clock = clock
        self._sleep = sleep
        self._log: deque[float] = deque()
        self._turn = asyncio.Lock()

    def _free_at(self) -> float:
        """Monotonic time at which one more start fits (now or earlier: it fits now)."""
        now = self._clock()
        while self._log and self._log[0] <= now - self._span:
            self._log.popleft()
        if len(self._log) < self._size:
            return now
        return self._log[0] + self._span

    def has_capacity(self, amount: float = 1) -> bool:
        """Whether one request could start now (``amount`` is taken as 1)."""
        return self._free_at() <= self._clock()

    async def acquire(self, amount: float = 1) -> None:
        """Wait until a start fits in the window, then record it (one per call)."""
        async with self._turn:
            # A wait on time, not on an event (asyncio may wake a hair early: re-check).
            while (at := self._free_at()) > self._clock():
                await self._sleep(at - self._clock())
            self._log.append(self._clock())
        if self.meter is not None:
            self.meter.record(1)


def metered_sliding(provider: str, max_requests: float, window_s: float) -> SlidingWindowLimiter:
    """A :class:`SlidingWindowLimiter` of ``max_requests`` per ``window_s``, metered as
    ``provider`` against the same budget (below 1 request per window: the rolling one's
    spacing, see :func:`metered_rolling`)."""
    meter = BudgetMeter(provider, max_requests=max_requests, window_s=window_s).export()
    return SlidingWindowLimiter(max_requests, window_s, meter=meter)
