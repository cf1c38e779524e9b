"""Commerce7 web hooks (list, create) and a one-item read that checks the credentials.

For ``crmsync commerce7 webhooks register | list`` and ``crmsync doctor``; the club
membership calls are in :mod:`shared.clients.commerce7` (same Basic auth, ``tenant``
header and error mapping, :func:`~shared.clients.commerce7.classify_commerce7`).
Shapes (reference/commerce7/NOTES.md §3 "Registering", [3rd-party]: the Zapier
integration dandiep/zapier-commerce7-plugin, utils/webhooks.js):

- ``POST /web-hook`` ``{object, action, url}`` -> the web hook with its ``id``;
- ``GET /web-hook?limit=50&page=n`` -> ``{"webHooks": [...]}`` (list pages hold at most
  50 records, NOTES.md §2).

Commerce7's admin UI can add Basic auth to a web hook ("we will add Basic Auth to the
call if you enter a username and password", NOTES.md §3 [official-docs]); no API field
for it is documented, so hooks registered here carry none.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, Field

from shared.clients.commerce7 import classify_commerce7
from shared.clients.http import ProviderHttp, ProviderResponse, limiter_per_s, validate_reply
from shared.settings import ProviderSettings

PROVIDER = "commerce7"
# "All get requests for lists have a limit of 50 records per page" (NOTES.md §2).
PAGE_LIMIT = 50
MAX_PAGES = 20


class Commerce7Webhook(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    object: str
    action: str
    url: str


class _WebhookList(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    web_hooks: list[Commerce7Webhook] = Field(alias="webHooks")


class Commerce7WebhooksClient:
    """Web hooks of any tenant, and a credentials check.

    Args:
        session: the shared ``aiohttp.ClientSession``.
        base_url: ``https://api.commerce7.com/v1`` or the sandbox.
        app_id, app_secret: Basic auth (NOTES.md §1); the secret is never logged.
        limiter: Commerce7's rate limit.
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
    ) -> Commerce7WebhooksClient:
        return cls(
            session,
            base_url=settings.commerce7_base_url,
            app_id=settings.commerce7_app_id,
            app_secret=settings.commerce7_app_secret.get_secret_value(),
            limiter=limiter_per_s(settings.commerce7_rate_per_s),
            timeout_s=settings.http_timeout_s,
            max_tries=max_tries,
        )

    async def probe(self, tenant: str) -> None:
        """``GET /club-membership?limit=1`` with the tenant header: one list item, the
        least a read can cost; proves the credentials and the tenant."""
        await self._request("GET", "/club-membership", tenant, params={"limit": "1"})

    async def list_webhooks(self, tenant: str) -> list[Commerce7Webhook]:
        """Every web hook of ``tenant``, page by page (50 a page)."""
        found: list[Commerce7Webhook] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"limit": str(PAGE_LIMIT), "page": str(page)}
            response = await self._request("GET", "/web-hook", tenant, params=params)
            chunk = validate_reply(PROVIDER, _WebhookList, response.data, response).web_hooks
            found.extend(chunk)
            if len(chunk) < PAGE_LIMIT:
                break
        return found

    async def create_webhook(
        self, tenant: str, *, object_: str, action: str, url: str
    ) -> Commerce7Webhook:
        """``POST /web-hook`` ``{object, action, url}`` (e.g. ``Order`` / ``Create``)."""
        body = {"object": object_, "action": action, "url": url}
        response = await self._request("POST", "/web-hook", tenant, json_body=body)
        return validate_reply(PROVIDER, Commerce7Webhook, response.data, response)

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
            method, self._base_url + path, params=params, json_body=json_body, headers=headers
        )
