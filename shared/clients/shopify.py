"""Shopify Admin API client: customer tags (GraphQL), customer and order reads (REST).

A membership tier is a customer tag (ADMIN_API.md B1). We write tags with the GraphQL
``tagsAdd`` / ``tagsRemove`` mutations because they add or remove only the named tags;
REST ``PUT customers/{id}.json`` replaces the whole tag string and would clobber tags
other apps set. Both mutations are idempotent, so a retried action is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Self

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.budget import metered_per_s
from shared.clients.http import (
    ProviderFailure,
    ProviderHttp,
    ProviderResponse,
    classify_status,
    validate_reply,
)
from shared.errors import ProviderRejectedError, ProviderUnavailableError
from shared.messages.orders import ShopifyOrder
from shared.settings import ProviderSettings

PROVIDER = "shopify"
CUSTOMER_GID_PREFIX = "gid://shopify/Customer/"
TAGS_ADD = (
    "mutation tagsAdd($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) "
    "{ node { id } userErrors { field message } } }"
)
TAGS_REMOVE = (
    "mutation tagsRemove($id: ID!, $tags: [String!]!) { tagsRemove(id: $id, tags: $tags) "
    "{ node { id } userErrors { field message } } }"
)
# Shortest wait after a GraphQL THROTTLED answer, in seconds; the bucket refills per second.
MIN_THROTTLE_WAIT_S = 1.0


class ShopifyCustomer(BaseModel):
    """The fields of a REST ``customer`` we use; ``tags`` split from Shopify's
    comma-separated string (``"Gold, VIP"`` -> ``["Gold", "VIP"]``)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value


class _ThrottleStatus(BaseModel):
    maximum_available: float = Field(0.0, alias="maximumAvailable")
    currently_available: float = Field(0.0, alias="currentlyAvailable")
    restore_rate: float = Field(0.0, alias="restoreRate")


class _QueryCost(BaseModel):
    requested_query_cost: float = Field(0.0, alias="requestedQueryCost")
    throttle_status: _ThrottleStatus | None = Field(None, alias="throttleStatus")


class _GraphQLError(BaseModel):
    message: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)


class _GraphQLErrors(BaseModel):
    errors: list[_GraphQLError]
    extensions: dict[str, Any] = Field(default_factory=dict)


class UserError(BaseModel):
    """One of a GraphQL mutation's ``userErrors`` (ADMIN_API.md B1)."""

    field: list[str] | None = None
    message: str


class _TagsPayload(BaseModel):
    user_errors: list[UserError] = Field(default_factory=list, alias="userErrors")


def user_errors_message(errors: Sequence[UserError]) -> str:
    """``userErrors`` as one line: ``"field.path: message; ..."``."""
    return "; ".join(f"{'.'.join(e.field)}: {e.message}" if e.field else e.message for e in errors)


def customer_gid(customer_id: int | str) -> str:
    """``207119551`` or ``"207119551"`` -> ``"gid://shopify/Customer/207119551"``; a gid
    passes through. Raises ValueError for anything else."""
    value = str(customer_id).strip()
    if value.startswith(CUSTOMER_GID_PREFIX):
        value = value.removeprefix(CUSTOMER_GID_PREFIX)
    if not value.isdigit():
        raise ValueError(f"not a Shopify customer id: {customer_id!r}")
    return CUSTOMER_GID_PREFIX + value


def throttle_wait_s(extensions: dict[str, Any]) -> float:
    """Seconds until the GraphQL bucket holds the query's cost again (ADMIN_API.md §C):
    ``(requestedQueryCost - currentlyAvailable) / restoreRate``, at least 1 s."""
    try:
        cost = _QueryCost.model_validate(extensions.get("cost") or {})
    except ValueError:
        return MIN_THROTTLE_WAIT_S
    status = cost.throttle_status
    if status is None or status.restore_rate <= 0:
        return MIN_THROTTLE_WAIT_S
    missing = cost.requested_query_cost - status.currently_available
    return max(MIN_THROTTLE_WAIT_S, missing / status.restore_rate)


def classify_graphql(provider: str, response: ProviderResponse) -> ProviderFailure | None:
    """HTTP status first (429, 5xx transient; 401, 403, 404 permanent), then top-level
    GraphQL ``errors`` on a 200: ``THROTTLED`` is transient with ``retry_after_s`` from
    ``extensions.cost``; any other error is permanent (the query itself is wrong)."""
    failure = classify_status(provider, response)
    if failure is not None or not response.data.get("errors"):
        return failure
    try:
        reply = _GraphQLErrors.model_validate(response.data)
    except ValueError:
        return ProviderRejectedError(provider, response.status, response.text)
    if any(_is_throttled(error) for error in reply.errors):
        return ProviderUnavailableError(
            provider,
            response.status,
            response.text,
            retry_after_s=throttle_wait_s(reply.extensions),
            message=f"{provider} GraphQL throttled (THROTTLED)",
        )
    messages = "; ".join(error.message for error in reply.errors)
    return ProviderRejectedError(
        provider, response.status, response.text, f"{provider} GraphQL errors: {messages}"
    )


def _is_throttled(error: _GraphQLError) -> bool:
    # The community thread shows only {"message": "Throttled"}; current APIs add the code.
    return error.extensions.get("code") == "THROTTLED" or error.message == "Throttled"


class ShopifyApi:
    """Shopify Admin API (``{base_url}/admin/api/{api_version}/...``) for one shop: the
    token, retries, error mapping and GraphQL calls; the calls are in the subclasses.

    Args:
        session: the shared ``aiohttp.ClientSession``.
        base_url: the shop's origin, e.g. ``https://example.myshopify.com`` (or the sandbox).
        access_token: sent as ``X-Shopify-Access-Token`` (ADMIN_API.md A); never logged.
        api_version: e.g. ``"2026-07"``.
        limiter: Shopify's rate limit (REST: 2 requests/s on a standard plan, §C).
        timeout_s: seconds per try.
        max_tries: tries per call, the first included (1 = no retry, for probes).

    Methods raise :class:`ProviderRejectedError` (401 bad token, GraphQL errors,
    ``userErrors``) or :class:`ProviderUnavailableError` (THROTTLED, 429, 5xx, network).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        access_token: str,
        api_version: str,
        limiter: AsyncLimiter,
        timeout_s: float = 10.0,
        max_tries: int = 3,
    ) -> None:
        self._admin_url = f"{base_url.rstrip('/')}/admin/api/{api_version}"
        self._headers = {"X-Shopify-Access-Token": access_token}
        self._http = ProviderHttp(
            session, provider=PROVIDER, limiter=limiter, timeout_s=timeout_s, max_tries=max_tries
        )

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: ProviderSettings, *, max_tries: int = 3
    ) -> Self:
        """A client for ``CRMSYNC_SHOPIFY_*`` with its own limiter; build one per process.

        The store's budget is per store, not per process: each of ``shopify_replicas``
        syncers paces at ``shopify_rate_per_s / shopify_replicas``.
        """
        return cls(
            session,
            base_url=settings.shopify_base_url,
            access_token=settings.shopify_access_token.get_secret_value(),
            api_version=settings.shopify_api_version,
            limiter=metered_per_s(
                PROVIDER, settings.shopify_rate_per_s / settings.shopify_replicas
            ),
            timeout_s=settings.http_timeout_s,
            max_tries=max_tries,
        )

    async def _graphql(
        self, query: str, variables: dict[str, Any], operation: str
    ) -> tuple[Any, ProviderResponse]:
        """POST ``graphql.json``; ``data.<operation>`` and the response, or
        ProviderRejectedError when the answer has no such field."""
        response = await self._http.request(
            "POST",
            f"{self._admin_url}/graphql.json",
            json_body={"query": query, "variables": variables},
            headers=self._headers,
            classify=classify_graphql,
        )
        data = (response.data.get("data") or {}).get(operation)
        if data is None:
            msg = f"shopify answered without data.{operation}"
            raise ProviderRejectedError(PROVIDER, response.status, response.text, msg)
        return data, response


class ShopifyClient(ShopifyApi):
    """Customer tags and order reads of one shop."""

    async def add_customer_tags(self, customer_id: int | str, tags: Sequence[str]) -> None:
        """Add ``tags`` to a customer, leaving its other tags alone (GraphQL ``tagsAdd``;
        ADMIN_API.md B1: tagsAdd adds without touching other tags). Idempotent.

        Args:
            customer_id: numeric id or ``gid://shopify/Customer/<id>``.
            tags: tag names; an empty sequence sends nothing.

        Raises:
            ProviderRejectedError: ``userErrors``, other GraphQL errors, 401/403/404.
            ProviderUnavailableError: THROTTLED, 429, 5xx or network failure after retries.
        """
        await self._mutate_tags("tagsAdd", TAGS_ADD, customer_id, tags)

    async def remove_customer_tags(self, customer_id: int | str, tags: Sequence[str]) -> None:
        """Remove ``tags`` from a customer, leaving its other tags alone (GraphQL
        ``tagsRemove``, ADMIN_API.md B1). Removing an absent tag is not an error.

        Raises:
            ProviderRejectedError, ProviderUnavailableError: as :meth:`add_customer_tags`.
        """
        await self._mutate_tags("tagsRemove", TAGS_REMOVE, customer_id, tags)

    async def get_customer(self, customer_id: int | str) -> ShopifyCustomer:
        """``GET customers/{id}.json`` (REST; sample ``customer_get_207119551.response.json``).

        Raises:
            ProviderRejectedError: 401/403/404, or a body without a readable ``customer``.
            ProviderUnavailableError: 429 (honouring ``Retry-After``), 5xx, network failure.
        """
        numeric_id = customer_gid(customer_id).removeprefix(CUSTOMER_GID_PREFIX)
        response = await self._http.request(
            "GET", f"{self._admin_url}/customers/{numeric_id}.json", headers=self._headers
        )
        customer = response.data.get("customer")
        return validate_reply(PROVIDER, ShopifyCustomer, customer, response)

    async def get_order(self, order_id: int | str) -> ShopifyOrder:
        """``GET orders/{id}.json`` (REST; sample ``order_get_450789469.response.json``):
        the order as it stands now, net of refunds in ``current_subtotal_price``. A
        refund webhook carries only the refund, so its handler reads the order here.

        Raises:
            ProviderRejectedError: 401/403/404, or a body without a readable ``order``.
            ProviderUnavailableError: 429 (honouring ``Retry-After``), 5xx, network failure.
        """
        numeric_id = str(order_id).strip()
        if not numeric_id.isdigit():
            raise ValueError(f"not a Shopify order id: {order_id!r}")
        response = await self._http.request(
            "GET", f"{self._admin_url}/orders/{numeric_id}.json", headers=self._headers
        )
        return validate_reply(PROVIDER, ShopifyOrder, response.data.get("order"), response)

    async def _mutate_tags(
        self,
        operation: Literal["tagsAdd", "tagsRemove"],
        query: str,
        customer_id: int | str,
        tags: Sequence[str],
    ) -> None:
        if not tags:
            return
        variables = {"id": customer_gid(customer_id), "tags": list(tags)}
        result, response = await self._graphql(query, variables, operation)
        payload = validate_reply(PROVIDER, _TagsPayload, result, response)
        if payload.user_errors:
            msg = f"shopify {operation} rejected: {user_errors_message(payload.user_errors)}"
            raise ProviderRejectedError(PROVIDER, response.status, response.text, msg)
