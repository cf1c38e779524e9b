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

from pydantic import BaseModel, ConfigDict, Field

from shared.clients.commerce7 import Commerce7Api
from shared.clients.http import validate_reply

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


class Commerce7WebhooksClient(Commerce7Api):
    """Web hooks of any tenant, and a credentials check (:meth:`probe`)."""

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
