"""Shopify GraphQL Admin API: the shop, and the shop's webhook subscriptions.

For ``crmsync shopify webhooks register | list`` and ``crmsync doctor``; the customer tag
writes are in :mod:`shared.clients.shopify` (same ``X-Shopify-Access-Token`` header and
error mapping, :func:`~shared.clients.shopify.classify_graphql`). Sources
(shopify.dev, admin-graphql reference, versions 2025-10 onward):

- ``webhookSubscriptionCreate(topic: WebhookSubscriptionTopic!, webhookSubscription:
  WebhookSubscriptionInput!)`` -> ``{webhookSubscription, userErrors}``
  (https://shopify.dev/docs/api/admin-graphql/2025-10/mutations/webhooksubscriptioncreate);
  the input's ``uri`` ("an HTTPS URL, a Google Pub/Sub URI ... or an Amazon EventBridge
  event source ARN") replaces the deprecated ``callbackUrl``, and ``format`` is ``JSON``
  (https://shopify.dev/docs/api/admin-graphql/2025-10/input-objects/webhooksubscriptioninput);
- ``webhookSubscriptions(first, after, topics: [WebhookSubscriptionTopic!])``, a
  connection of ``WebhookSubscription {id, topic, uri, format, createdAt}`` that "returns
  only shop-scoped subscriptions, not app-scoped subscriptions configured in TOML files"
  (https://shopify.dev/docs/api/admin-graphql/2025-07/queries/webhookSubscriptions;
  https://shopify.dev/docs/api/admin-graphql/latest/objects/WebhookSubscription);
- ``shop { name myshopifyDomain }``: the cheapest authenticated read (objects cost 1
  point, scalars 0, ADMIN_API.md §C), used to check the access token.

A topic's enum value is its REST name in capitals with ``_`` for ``/`` (``orders/paid``
-> ``ORDERS_PAID``, WEBHOOKS.md §5). Creating a subscription that exists is refused by
Shopify with the user error "Address for this topic has already been taken" (its REST
wording, seen in Shopify/shopify_app#263), so callers list first and skip those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.clients.http import validate_reply
from shared.clients.shopify import ShopifyApi, UserError, user_errors_message
from shared.errors import ProviderRejectedError

PROVIDER = "shopify"
# Subscriptions per page when listing (a connection's ``first`` is at most 250).
PAGE_SIZE = 100
# Pages read at most: 2,500 subscriptions is far more than any shop has.
MAX_PAGES = 25

SHOP = "query shop { shop { name myshopifyDomain } }"
WEBHOOK_SUBSCRIPTIONS = (
    "query webhookSubscriptions($first: Int!, $after: String, "
    "$topics: [WebhookSubscriptionTopic!]) { webhookSubscriptions(first: $first, "
    "after: $after, topics: $topics) { nodes { id topic uri format createdAt } "
    "pageInfo { hasNextPage endCursor } } }"
)
WEBHOOK_SUBSCRIPTION_CREATE = (
    "mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, "
    "$webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate("
    "topic: $topic, webhookSubscription: $webhookSubscription) { webhookSubscription "
    "{ id topic uri format createdAt } userErrors { field message } } }"
)

_CAMEL = ConfigDict(populate_by_name=True, extra="ignore")


def topic_enum(topic: str) -> str:
    """``orders/paid`` -> ``ORDERS_PAID`` (a ``WebhookSubscriptionTopic`` value)."""
    return topic.strip().upper().replace("/", "_")


class Shop(BaseModel):
    model_config = _CAMEL

    name: str
    myshopify_domain: str = Field("", alias="myshopifyDomain")


class WebhookSubscription(BaseModel):
    """A shop-scoped webhook subscription; ``topic`` is the enum value (``ORDERS_PAID``)."""

    model_config = _CAMEL

    id: str
    topic: str
    uri: str = ""
    format: str = "JSON"
    created_at: str | None = Field(None, alias="createdAt")


class _PageInfo(BaseModel):
    model_config = _CAMEL

    has_next_page: bool = Field(False, alias="hasNextPage")
    end_cursor: str | None = Field(None, alias="endCursor")


class _Connection(BaseModel):
    model_config = _CAMEL

    nodes: list[WebhookSubscription]
    page_info: _PageInfo = Field(default_factory=_PageInfo, alias="pageInfo")


class _CreatePayload(BaseModel):
    model_config = _CAMEL

    webhook_subscription: WebhookSubscription | None = Field(None, alias="webhookSubscription")
    user_errors: list[UserError] = Field(default_factory=list, alias="userErrors")


class ShopifyWebhooksClient(ShopifyApi):
    """The shop and its webhook subscriptions (GraphQL); ``uri`` needs API 2025-10 or later."""

    async def shop(self) -> Shop:
        """``query { shop { name myshopifyDomain } }``: checks the token, reads nothing else."""
        data, response = await self._graphql(SHOP, {}, "shop")
        return validate_reply(PROVIDER, Shop, data, response)

    async def list_subscriptions(
        self, topics: Sequence[str] | None = None
    ) -> list[WebhookSubscription]:
        """Every shop-scoped subscription (of ``topics``, enum values, if given), paging
        through ``webhookSubscriptions`` 100 at a time."""
        found: list[WebhookSubscription] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            variables: dict[str, Any] = {"first": PAGE_SIZE, "after": after}
            if topics is not None:
                variables["topics"] = list(topics)
            data, response = await self._graphql(
                WEBHOOK_SUBSCRIPTIONS, variables, "webhookSubscriptions"
            )
            page = validate_reply(PROVIDER, _Connection, data, response)
            found.extend(page.nodes)
            if not page.page_info.has_next_page or not page.page_info.end_cursor:
                break
            after = page.page_info.end_cursor
        return found

    async def create_subscription(self, topic: str, uri: str) -> WebhookSubscription:
        """``webhookSubscriptionCreate`` for ``topic`` (enum value) to ``uri``, JSON format.

        Raises:
            ProviderRejectedError: ``userErrors`` (e.g. "Address for this topic has
                already been taken"), an unknown topic, 401/403.
        """
        variables = {"topic": topic, "webhookSubscription": {"uri": uri, "format": "JSON"}}
        data, response = await self._graphql(
            WEBHOOK_SUBSCRIPTION_CREATE, variables, "webhookSubscriptionCreate"
        )
        payload = validate_reply(PROVIDER, _CreatePayload, data, response)
        if payload.user_errors or payload.webhook_subscription is None:
            messages = user_errors_message(payload.user_errors)
            msg = f"shopify webhookSubscriptionCreate {topic} rejected: {messages or 'no result'}"
            raise ProviderRejectedError(PROVIDER, response.status, response.text, msg)
        return payload.webhook_subscription
