"""RepCard client: the read endpoints of the W5 pull (reference/repcard/NOTES.md).

RepCard publishes no API reference; everything here is what third-party code
observed (NOTES.md, chiefly ``eliosfund/repcard-php-sdk``): base URL
``https://app.repcard.com/api``, header ``x-api-key: <key>`` with
``Accept: application/json``, ``page`` / ``per_page`` pagination whose answers carry
``totalPages``, lists under ``result.data`` (or ``data``), dates as ``YYYY-MM-DD``.

Rate limit: RepCard's is undocumented (NOTES.md, "Unknown / undocumented"). The default
budget is 100 requests per **10 s** (``CRMSYNC_REPCARD_RATE_REQUESTS`` /
``CRMSYNC_REPCARD_RATE_PERIOD_S``), i.e. 10 requests/s for the whole deployment: a
full pull of a 5,000-customer company (~5,300 requests) then takes about 9 minutes,
inside the 10-30 minutes of the system this replaces, and a daily incremental pull a
few hundred requests (under a minute), while staying far below what a per-second
budget of 100 would send to an API whose limit nobody has documented. A 429 with
``Retry-After`` is honoured whatever the budget says. The budget is one per API key,
so each of ``CRMSYNC_REPCARD_REPLICAS`` syncers paces at ``requests / replicas``, as
HubSpot's budget is split (``shared/clients/hubspot.py``).

Errors: 401 / 403 -> :class:`RepCardAuthError` (permanent: the key is wrong or lacks
access, and every other call would fail alike); other 4xx and unreadable bodies ->
:class:`~shared.errors.ProviderRejectedError`; 429, 5xx, timeouts -> retried with
``backoff`` (``shared/clients/http.py``), then
:class:`~shared.errors.ProviderUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from shared.budget import metered_rolling, metered_sliding
from shared.clients.http import ProviderFailure, ProviderHttp, ProviderResponse, classify_status
from shared.errors import ProviderRejectedError
from shared.settings import ProviderSettings

PROVIDER = "repcard"
# The SDK's client timeouts were 10 s a request (NOTES.md); ours come from settings.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 8.0
# A longer Retry-After is raised so the chunk is re-queued instead of sleeping here.
MAX_INLINE_WAIT_S = 30.0


class RepCardAuthError(ProviderRejectedError):
    """RepCard refused the API key (401) or its access (403): stop the whole run."""


def classify_repcard(provider: str, response: ProviderResponse) -> ProviderFailure | None:
    """2xx ok; 401 / 403 -> :class:`RepCardAuthError`; the rest as ``classify_status``."""
    if response.status in (401, 403):
        why = "unauthorised (401)" if response.status == 401 else "forbidden (403)"
        message = (
            f"RepCard refused the API key: {why}; check CRMSYNC_REPCARD_API_KEY "
            "and the key's access in RepCard"
        )
        return RepCardAuthError(provider, response.status, response.text, message)
    return classify_status(provider, response)


@dataclass(frozen=True)
class Page:
    """One page of a list: its records (JSON objects as sent), its number, the total."""

    records: list[dict[str, Any]]
    page: int
    total_pages: int


def parse_page(data: Mapping[str, Any], page: int) -> Page:
    """Read ``{"result": {"data": [...], "totalPages": n}}`` or ``{"data": [...], ...}``.

    Raises:
        ValueError: no list of objects under ``result.data`` / ``data``.
    """
    body: Mapping[str, Any] = data.get("result") if isinstance(data.get("result"), dict) else data  # type: ignore[assignment]
    records = body.get("data")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("no list of records under result.data or data")
    total = body.get("totalPages", data.get("totalPages", page))
    total_pages = int(total) if isinstance(total, int | str) and str(total).isdigit() else page
    return Page(records, page, max(total_pages, 0))


def date_window(from_date: date | None, to_date: date | None) -> dict[str, str]:
    """``from_date`` / ``to_date`` query parameters (``YYYY-MM-DD``), only those given."""
    params: dict[str, str] = {}
    if from_date is not None:
        params["from_date"] = from_date.isoformat()
    if to_date is not None:
        params["to_date"] = to_date.isoformat()
    return params


class RepCardClient:
    """RepCard's read API for one company.

    Args:
        session: the shared ``aiohttp.ClientSession``; its owner closes it.
        base_url: ``https://app.repcard.com/api`` or the sandbox's ``.../repcard``.
        api_key: sent as ``x-api-key``; never logged.
        company_id: sent as ``company_id`` on ``/users/minimal`` (NOTES.md).
        limiter: paces every call (this replica's share of the key's budget).
        per_page: records per page asked for.
        timeout_s: seconds per try.
        max_tries: tries per call, the first included.

    Every method raises :class:`RepCardAuthError`, ``ProviderRejectedError`` or
    ``ProviderUnavailableError`` as the module docstring says.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        company_id: str,
        limiter: AsyncLimiter,
        per_page: int = 100,
        timeout_s: float = 10.0,
        max_tries: int = 4,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"x-api-key": api_key, "Accept": "application/json"}
        self.company_id, self.per_page = company_id, per_page
        self._http = ProviderHttp(
            session,
            provider=PROVIDER,
            limiter=limiter,
            classify=classify_repcard,
            timeout_s=timeout_s,
            max_tries=max_tries,
            base_wait_s=BACKOFF_BASE_S,
            max_wait_s=BACKOFF_MAX_S,
            max_inline_wait_s=MAX_INLINE_WAIT_S,
        )

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: ProviderSettings, *, max_tries: int = 4
    ) -> RepCardClient:
        """A client for ``CRMSYNC_REPCARD_*``; build one per process.

        Paces at ``repcard_rate_requests / repcard_replicas`` per rolling
        ``repcard_rate_period_s`` (never more in any window of that length, and that
        much when saturated: ``shared.budget.SlidingWindowLimiter``), metered as
        ``crmsync_provider_budget_utilisation{provider="repcard"}``.
        """
        replicas = max(1, settings.repcard_replicas)
        share = settings.repcard_rate_requests / replicas
        period = settings.repcard_rate_period_s
        # The sliding log runs at the whole budget (the bucket at 95 % of it).
        limiter: AsyncLimiter = (
            metered_sliding(PROVIDER, share, period)
            if share >= 1
            else metered_rolling(PROVIDER, share, period)
        )
        return cls(
            session,
            base_url=settings.repcard_base_url,
            api_key=settings.repcard_api_key.get_secret_value(),
            company_id=settings.repcard_company_id,
            limiter=limiter,
            per_page=settings.repcard_per_page,
            timeout_s=settings.http_timeout_s,
            max_tries=max_tries,
        )

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> ProviderResponse:
        """``GET {base_url}{path}``: the answer the classifier accepted."""
        return await self._http.request(
            "GET", f"{self._base_url}{path}", params=params, headers=self._headers
        )

    async def list_page(
        self, path: str, page: int, params: Mapping[str, str] | None = None
    ) -> Page:
        """One page (1-based) of a list endpoint, ``per_page`` records at most.

        Raises:
            ProviderRejectedError: also when the body holds no list of records.
        """
        query = {**(params or {}), "page": str(page), "per_page": str(self.per_page)}
        response = await self.get(path, query)
        try:
            return parse_page(response.data, page)
        except ValueError as exc:
            msg = f"repcard GET {path} page {page}: {exc}"
            raise ProviderRejectedError(PROVIDER, response.status, response.text, msg) from None

    async def list_all(self, path: str, params: Mapping[str, str] | None = None) -> list[Page]:
        """Every page of a list, from page 1 until ``totalPages``."""
        first = await self.list_page(path, 1, params)
        pages = [first]
        for number in range(2, first.total_pages + 1):
            pages.append(await self.list_page(path, number, params))
        return pages

    # Paths and query parameters of the pull (NOTES.md, "Endpoints used by the SDK").

    def users_params(self) -> dict[str, str]:
        """``/users/minimal`` takes ``company_id``."""
        return {"company_id": self.company_id}

    async def list_status_logs(
        self, customer_id: int, from_date: date | None, to_date: date | None
    ) -> list[Page]:
        """``GET /customers/{id}/status-logs?from_date&to_date`` (every page)."""
        return await self.list_all(
            f"/customers/{customer_id}/status-logs", date_window(from_date, to_date)
        )

    async def list_customer_attachments(self, customer_id: int) -> list[Page]:
        """``GET /customers/{id}/attachments`` (every page; the SDK asks 50 a page)."""
        return await self.list_all(f"/customers/{customer_id}/attachments")

    async def get_customer(self, customer_id: int) -> dict[str, Any]:
        """``GET /customers/{id}``: one customer (``result`` or the body itself)."""
        response = await self.get(f"/customers/{customer_id}")
        result = response.data.get("result")
        return result if isinstance(result, dict) else response.data

    async def probe(self) -> int:
        """``GET /offices`` page 1 with ``per_page=1`` (read-only): the number of pages,
        i.e. offices, RepCard reports. Raises as every call does."""
        response = await self.get("/offices", {"page": "1", "per_page": "1"})
        return parse_page(response.data, 1).total_pages
