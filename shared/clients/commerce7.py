"""Commerce7 REST client: club memberships, the tier mechanism (NOTES.md §4).

Every request carries Basic auth (app id / app secret), the ``tenant`` header and
``Content-Type: application/json`` (NOTES.md §1). Club membership endpoints are
documented by third parties only (NOTES.md §4 [3rd-party]); shapes here follow them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, Literal, Self
from urllib.parse import quote

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, field_serializer
from pydantic.alias_generators import to_camel

from shared.budget import metered_per_s
from shared.clients.http import (
    ProviderFailure,
    ProviderHttp,
    ProviderResponse,
    classify_status,
    validate_reply,
)
from shared.errors import ProviderRejectedError
from shared.settings import ProviderSettings

PROVIDER = "commerce7"
# "All get requests for lists have a limit of 50 records per page" (NOTES.md §2).
PAGE_LIMIT = 50

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def iso_utc(value: datetime) -> str:
    """``2024-07-26T17:29:31.608Z``, the form Commerce7 itself writes; naive means UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ClubMembershipCreate(BaseModel):
    """Body of ``POST /club-membership`` (NOTES.md §4), sent with camelCase aliases.

    Commerce7 requires a credit card on file for a club membership (NOTES.md §4);
    ``None`` fields are left out of the body.
    """

    model_config = _CAMEL

    customer_id: str
    club_id: str
    signup_date: datetime
    order_delivery_method: Literal["Ship", "Pickup"] = "Pickup"
    bill_to_customer_address_id: str | None = None
    ship_to_customer_address_id: str | None = None
    customer_credit_card_id: str | None = None

    @field_serializer("signup_date")
    def _signup_date_iso(self, value: datetime) -> str:
        return iso_utc(value)


class ClubMembership(BaseModel):
    """A club membership as Commerce7 returns it; active while ``cancel_date`` is None."""

    model_config = _CAMEL

    id: str
    customer_id: str
    club_id: str
    signup_date: datetime | None = None
    cancel_date: datetime | None = None
    cancellation_reason: str | None = None
    status: str | None = None
    created_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.cancel_date is None


class _ClubMembershipList(BaseModel):
    model_config = _CAMEL

    club_memberships: list[ClubMembership]


class _ErrorBody(BaseModel):
    """Commerce7's non-2xx body ``{statusCode, type, message}`` (NOTES.md §7)."""

    model_config = _CAMEL

    status_code: int | None = None
    type: str | None = None
    message: Any = None


def classify_commerce7(provider: str, response: ProviderResponse) -> ProviderFailure | None:
    """Default status mapping, with ``type: message`` from the error body when present;
    a 200 carrying ``{errors: [...]}`` (NOTES.md §7) is permanent."""
    if 200 <= response.status < 300:
        errors = response.data.get("errors")
        if not errors:
            return None
        return ProviderRejectedError(
            provider, response.status, response.text, f"{provider} answered with errors: {errors}"
        )
    try:
        body = _ErrorBody.model_validate(response.data)
    except ValueError:
        body = _ErrorBody()
    message = ""
    if body.message:
        kind = f" {body.type}" if body.type else ""
        message = f"{provider} HTTP {response.status}{kind}: {body.message}"
    return classify_status(provider, response, message)


class Commerce7Api:
    """Commerce7's REST API for any tenant: Basic auth, the ``tenant`` header, retries
    and error mapping (:func:`classify_commerce7`); the calls are in the subclasses.

    Args:
        session: the shared ``aiohttp.ClientSession``.
        base_url: e.g. ``https://api.commerce7.com/v1`` (or the sandbox); a trailing
            slash is fine.
        app_id: the Basic auth username (NOTES.md §1).
        app_secret: the Basic auth password; never logged.
        limiter: Commerce7's rate limit (the number is undocumented, NOTES.md §2).
        timeout_s: seconds per try.
        max_tries: tries per call, the first included (1 = no retry, for probes).

    Methods raise :class:`ProviderRejectedError` (401 bad credentials, 400 no tenant,
    4xx) or :class:`ProviderUnavailableError` (429, 5xx, network).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        app_id: str,
        app_secret: str,
        limiter: AsyncLimiter,
        timeout_s: float = 10.0,
        max_tries: int = 3,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        # RFC 7617 Basic credentials, built once; aiohttp 3.14 deprecates BasicAuth.
        credentials = base64.b64encode(f"{app_id}:{app_secret}".encode()).decode("ascii")
        self._authorization = f"Basic {credentials}"
        self._http = ProviderHttp(
            session,
            provider=PROVIDER,
            limiter=limiter,
            classify=classify_commerce7,
            timeout_s=timeout_s,
            max_tries=max_tries,
        )

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: ProviderSettings, *, max_tries: int = 3
    ) -> Self:
        """A client for ``CRMSYNC_COMMERCE7_*`` with its own limiter; build one per process.

        The budget is per app, not per process: each of ``commerce7_replicas`` syncers
        paces at ``commerce7_rate_per_s / commerce7_replicas``.
        """
        return cls(
            session,
            base_url=settings.commerce7_base_url,
            app_id=settings.commerce7_app_id,
            app_secret=settings.commerce7_app_secret.get_secret_value(),
            limiter=metered_per_s(
                PROVIDER, settings.commerce7_rate_per_s / settings.commerce7_replicas
            ),
            timeout_s=settings.http_timeout_s,
            max_tries=max_tries,
        )

    async def _request(
        self,
        method: str,
        path: str,
        tenant: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> ProviderResponse:
        headers = {
            "Authorization": self._authorization,
            "tenant": tenant,
            "Content-Type": "application/json",
        }
        return await self._http.request(
            method,
            f"{self._base_url}{path}",
            params=params,
            json_body=json_body,
            headers=headers,
        )


class Commerce7Client(Commerce7Api):
    """Club memberships (``{base_url}/club-membership``...) of any tenant."""

    async def list_club_memberships(
        self, tenant: str, *, customer_id: str, club_id: str | None = None
    ) -> list[ClubMembership]:
        """``GET /club-membership?customerId=&clubId=&limit=50&page=n`` ->
        ``{"clubMemberships": [...]}``, every page (Commerce7 lists 50 per page,
        NOTES.md §2; a customer rarely needs a second one). Cancelled memberships are
        included; filter on :attr:`ClubMembership.is_active`.

        Raises:
            ProviderRejectedError: 4xx (bad credentials, unknown tenant, ...) or an
                unreadable body.
            ProviderUnavailableError: 429, 5xx, network failure after retries.
        """
        found: list[ClubMembership] = []
        page = 1
        while True:
            params = {"customerId": customer_id, "limit": str(PAGE_LIMIT), "page": str(page)}
            if club_id is not None:
                params["clubId"] = club_id
            response = await self._request("GET", "/club-membership", tenant, params=params)
            chunk = validate_reply(
                PROVIDER, _ClubMembershipList, response.data, response
            ).club_memberships
            found.extend(chunk)
            if len(chunk) < PAGE_LIMIT:
                return found
            page += 1

    async def create_club_membership(
        self, tenant: str, body: ClubMembershipCreate
    ) -> ClubMembership:
        """``POST /club-membership`` (NOTES.md §4). Not idempotent: a repeat, or two
        callers at once, enrol twice, so a caller re-lists afterwards and cancels the
        duplicates (``services/syncer/providers.py`` does).

        Raises:
            ProviderRejectedError: 4xx, e.g. 422 when the customer has no card on file.
            ProviderUnavailableError: 429, 5xx, network failure after retries.
        """
        json_body = body.model_dump(mode="json", by_alias=True, exclude_none=True)
        response = await self._request("POST", "/club-membership", tenant, json_body=json_body)
        return validate_reply(PROVIDER, ClubMembership, response.data, response)

    async def cancel_club_membership(
        self, tenant: str, membership_id: str, *, cancel_date: datetime, reason: str
    ) -> ClubMembership:
        """``PUT /club-membership/{id}`` with ``{cancelDate, cancellationReason}``.

        Cancellation is immediate and ``reason`` must be one of Commerce7's list, e.g.
        ``"Other"`` (NOTES.md §4). Cancelling again just sets the date again.

        Raises:
            ProviderRejectedError: 4xx, e.g. 404 unknown membership, 422 bad reason.
            ProviderUnavailableError: 429, 5xx, network failure after retries.
        """
        json_body = {"cancelDate": iso_utc(cancel_date), "cancellationReason": reason}
        path = f"/club-membership/{quote(membership_id, safe='')}"
        response = await self._request("PUT", path, tenant, json_body=json_body)
        return validate_reply(PROVIDER, ClubMembership, response.data, response)
