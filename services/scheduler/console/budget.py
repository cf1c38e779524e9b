"""HubSpot's request budget as the syncers use it, for the console's overview.

Each syncer exports ``crmsync_provider_budget_utilisation{provider="hubspot"}`` (its
share of the app's 190 requests / 10 s used over the last window, 0-1; see
:mod:`shared.budget`). The console reads it from the syncers' ``/metrics``
(``CRMSYNC_CONSOLE_SYNCER_METRICS_URLS``) and from this process's own registry; the
replicas' mean is the share of the whole app budget in use (each has an equal share).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

METRIC = "crmsync_provider_budget_utilisation"
# Longest wait for one syncer's /metrics, in seconds.
SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class BudgetUse:
    """Attributes:
    source: ``"this process"`` or the /metrics URL.
    utilisation: 0-1 of that replica's share; None if it did not answer.
    """

    source: str
    utilisation: float | None


def _hubspot_value(families: object) -> float | None:
    for family in families:  # type: ignore[attr-defined]
        if family.name != METRIC:
            continue
        for sample in family.samples:
            if sample.labels.get("provider") == "hubspot":
                return float(sample.value)
    return None


async def _scrape(http: aiohttp.ClientSession, url: str) -> BudgetUse:
    try:
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        async with http.get(url, timeout=timeout) as resp:
            resp.raise_for_status()
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return BudgetUse(url, None)
    return BudgetUse(url, _hubspot_value(text_string_to_metric_families(text)))


async def hubspot_budget(http: aiohttp.ClientSession, urls: Sequence[str]) -> list[BudgetUse]:
    """One entry per configured syncer URL, plus this process if it has a HubSpot client."""
    found = list(await asyncio.gather(*(_scrape(http, u) for u in urls)))
    own = _hubspot_value(REGISTRY.collect())
    if own is not None:
        found.insert(0, BudgetUse("this process", own))
    return found


def mean_use(uses: Sequence[BudgetUse]) -> float | None:
    """The answering replicas' mean utilisation (0-1), None if none answered."""
    values = [u.utilisation for u in uses if u.utilisation is not None]
    return sum(values) / len(values) if values else None
