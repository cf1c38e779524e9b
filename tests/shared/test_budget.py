"""crmsync_provider_budget_utilisation: the share of a provider's budget a replica uses."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from shared.budget import SLIDING_GUARD_S, BudgetMeter, SlidingWindowLimiter, metered_per_s
from shared.clients.commerce7 import Commerce7Client
from shared.clients.hubspot import HubSpotClient
from shared.clients.shopify import ShopifyClient
from shared.settings import ProviderSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("crmsync_provider_budget_utilisation", {"provider": provider})


def test_utilisation_is_the_share_of_the_budget_used_over_the_last_window() -> None:
    clock = Clock()
    # HubSpot's 190 per 10 s split across two replicas: 95 per 10 s for this one.
    meter = BudgetMeter("hubspot", max_requests=95, window_s=10.0, clock=clock)
    for _ in range(19):
        meter.record()
        clock.now += 0.5
    assert meter.utilisation() == pytest.approx(19 / 95)
    clock.now += 0.6  # the first call is now 10.1 s old
    assert meter.utilisation() == pytest.approx(18 / 95)
    clock.now += 10
    assert meter.utilisation() == 0.0


def test_a_per_second_budget_is_averaged_over_ten_seconds() -> None:
    clock = Clock()
    meter = BudgetMeter("shopify", max_requests=2, window_s=1.0, clock=clock)
    assert (meter.measure_s, meter.allowed) == (10.0, 20.0)
    for _ in range(20):  # 2/s for 10 s: the whole budget
        meter.record()
        clock.now += 0.5
    assert meter.utilisation() == pytest.approx(19 / 20)  # the first one just left


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BudgetMeter("x", max_requests=0, window_s=1)
    with pytest.raises(ValueError):
        BudgetMeter("x", max_requests=1, window_s=0)


async def test_a_metered_limiter_paces_like_the_plain_one_and_feeds_the_metric() -> None:
    limiter = metered_per_s("test_provider", 5.0)
    assert (limiter.max_rate, limiter.time_period) == (5.0, 1)
    for _ in range(5):
        async with limiter:
            pass
    assert not limiter.has_capacity()  # the bucket is full: pacing unchanged
    assert gauge("test_provider") == pytest.approx(5 / 50)


async def test_the_clients_built_from_settings_report_their_calls(sandbox, http) -> None:
    settings = ProviderSettings(
        _env_file=None,
        shopify_base_url=f"{sandbox}/shopify",
        commerce7_base_url=f"{sandbox}/commerce7/v1",
        hubspot_base_url=f"{sandbox}/hubspot",
        shopify_rate_per_s=8,
        shopify_replicas=2,
        commerce7_rate_per_s=10,
        commerce7_replicas=2,
        hubspot_rate_per_10s=190,
        hubspot_replicas=2,
    )
    seed = {"id": 4242, "email": "budget@example.com", "tags": []}
    async with http.post(f"{sandbox}/_sandbox/shopify/customers", json=seed) as resp:
        assert resp.status == 201
    shopify = ShopifyClient.from_settings(http, settings)
    for _ in range(3):
        await shopify.get_customer(4242)
    # This replica's share of the store's budget: 8 / 2 replicas per second.
    assert gauge("shopify") == pytest.approx(3 / 40)

    commerce7 = Commerce7Client.from_settings(http, settings)
    await commerce7.list_club_memberships("testing", customer_id="no-such-customer")
    assert gauge("commerce7") == pytest.approx(1 / 50)  # 10 / 2 per second

    hubspot = HubSpotClient.from_settings(http, settings)
    await hubspot.batch_read("contacts", ["nobody@example.com"], ["email"], id_property="email")
    # This replica's share: 190 / 2 replicas per 10 s.
    assert gauge("hubspot") == pytest.approx(1 / 95)


async def test_the_sliding_limiter_runs_at_the_budget_and_never_above_it() -> None:
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    limiter = SlidingWindowLimiter(100, 1.0, clock=clock, sleep=sleep)
    starts = []
    for _ in range(1000):
        async with limiter:
            starts.append(clock.now)
    # Never more than 100 starts in any 1 s window...
    busiest = max(sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts))
    assert busiest == 100
    # ...and 100 per (1 s + the guard) when saturated, not the rolling bucket's 95.
    assert starts[-1] - starts[0] == pytest.approx(9 * (1.0 + SLIDING_GUARD_S))


def test_a_sliding_budget_needs_one_request() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0.5, 1.0)
