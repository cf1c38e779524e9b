"""The Shopify sandbox's shop and webhook subscriptions (GraphQL Admin API).

Served on the same ``POST /shopify/admin/api/{version}/graphql.json`` as the customer
tag mutations (:mod:`services.sandbox.shopify`): a middleware answers the requests whose
``query`` names one of the operations below and passes every other one on. Like the tag
mutations, an operation is found by a regex on the query text and reads only
``variables`` (no GraphQL parser); the answer carries every field crmsync selects.
Shapes as :mod:`shared.clients.shopify_webhooks` cites them:

- ``shop`` -> ``{"data": {"shop": {"name", "myshopifyDomain", ...}}}``;
- ``webhookSubscriptions(first, after, topics)`` -> ``{nodes, edges, pageInfo}``;
- ``webhookSubscriptionCreate(topic, webhookSubscription: {uri, format})`` ->
  ``{webhookSubscription, userErrors}``; the same topic and address twice -> user error
  "Address for this topic has already been taken"; an unknown topic or a ``uri`` that
  is not http(s) -> a top-level GraphQL error.

Every request needs ``X-Shopify-Access-Token`` (401 otherwise, as the REST routes).
Control: ``GET /_sandbox/shopify/webhook-subscriptions`` -> ``{"webhookSubscriptions":
[...]}``; ``POST /_sandbox/reset`` forgets them.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.sandbox.control import on_reset, settings_key
from services.sandbox.faults import Handler
from services.sandbox.hubspot_objects import iso_now

SHOP_DOMAIN = "crmsync-dev.myshopify.com"
# WebhookSubscriptionTopic values the sandbox knows (a subset of Shopify's enum).
TOPICS = frozenset(
    {
        "APP_UNINSTALLED",
        "CUSTOMERS_CREATE",
        "CUSTOMERS_DELETE",
        "CUSTOMERS_UPDATE",
        "ORDERS_CANCELLED",
        "ORDERS_CREATE",
        "ORDERS_DELETE",
        "ORDERS_EDITED",
        "ORDERS_FULFILLED",
        "ORDERS_PAID",
        "ORDERS_UPDATED",
        "REFUNDS_CREATE",
    }
)
TAKEN = "Address for this topic has already been taken"
_OPERATION = re.compile(r"\b(webhookSubscriptionCreate|webhookSubscriptions|shop)\s*[({]")
_COST = {
    "requestedQueryCost": 1,
    "actualQueryCost": 1,
    "throttleStatus": {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1999,
        "restoreRate": 100.0,
    },
}


@dataclass
class WebhooksState:
    """Subscriptions in creation order, by gid."""

    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(7001))

    def reset(self) -> None:
        self.subscriptions.clear()
        self.ids = itertools.count(7001)


webhooks_key = web.AppKey("sandbox_shopify_webhooks", WebhooksState)


def _answer(data: dict[str, Any]) -> web.Response:
    return web.json_response({"data": data, "extensions": {"cost": _COST}})


def _error(message: str, code: str) -> web.Response:
    return web.json_response({"errors": [{"message": message, "extensions": {"code": code}}]})


def _shop() -> web.Response:
    shop = {"name": "crmsync dev", "myshopifyDomain": SHOP_DOMAIN, "currencyCode": "USD"}
    return _answer({"shop": shop})


def _list(state: WebhooksState, variables: dict[str, Any]) -> web.Response:
    first = variables.get("first", 50)
    if not isinstance(first, int) or not 1 <= first <= 250:
        return _error("Variable $first must be an Int from 1 to 250", "INVALID_VARIABLE")
    topics = variables.get("topics")
    if topics is not None and not (isinstance(topics, list) and set(topics) <= TOPICS):
        return _error(
            "Variable $topics has an invalid WebhookSubscriptionTopic", "INVALID_VARIABLE"
        )
    found = [s for s in state.subscriptions.values() if topics is None or s["topic"] in topics]
    after = variables.get("after")
    start = int(after.removeprefix("cursor:")) if isinstance(after, str) and after else 0
    page = found[start : start + first]
    more = start + first < len(found)
    end = f"cursor:{start + len(page)}" if page else None
    edges = [{"cursor": f"cursor:{start + i + 1}", "node": s} for i, s in enumerate(page)]
    connection = {
        "nodes": page,
        "edges": edges,
        "pageInfo": {"hasNextPage": more, "endCursor": end},
    }
    return _answer({"webhookSubscriptions": connection})


def _create(state: WebhooksState, variables: dict[str, Any], version: str) -> web.Response:
    topic, given = variables.get("topic"), variables.get("webhookSubscription")
    if topic not in TOPICS:
        return _error(f"Variable $topic has an invalid value: {topic!r}", "INVALID_VARIABLE")
    if not isinstance(given, dict) or not isinstance(given.get("uri"), str):
        return _error("Variable $webhookSubscription needs a string uri", "INVALID_VARIABLE")
    uri = given["uri"]
    if urlsplit(uri).scheme not in ("http", "https") or not urlsplit(uri).hostname:
        return _error(f"uri must be an http(s) URL, got {uri!r}", "INVALID_VARIABLE")
    if any(s["topic"] == topic and s["uri"] == uri for s in state.subscriptions.values()):
        errors = [{"field": ["webhookSubscription", "callbackUrl"], "message": TAKEN}]
        return _answer(
            {"webhookSubscriptionCreate": {"webhookSubscription": None, "userErrors": errors}}
        )
    now = iso_now()
    gid = f"gid://shopify/WebhookSubscription/{next(state.ids)}"
    subscription = {
        "id": gid,
        "topic": topic,
        "uri": uri,
        "format": given.get("format", "JSON"),
        "apiVersion": {"handle": version},
        "createdAt": now,
        "updatedAt": now,
    }
    state.subscriptions[gid] = subscription
    return _answer(
        {"webhookSubscriptionCreate": {"webhookSubscription": subscription, "userErrors": []}}
    )


def _is_graphql(request: web.Request) -> bool:
    path = request.path
    return (
        request.method == "POST"
        and path.startswith("/shopify/admin/api/")
        and path.endswith("/graphql.json")
    )


@web.middleware
async def webhooks_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the operations of this module; pass everything else to the tag handler."""
    if not _is_graphql(request):
        return await handler(request)
    try:
        body = json.loads(await request.read())
    except ValueError:
        return await handler(request)
    query = body.get("query") if isinstance(body, dict) else None
    match = _OPERATION.search(query) if isinstance(query, str) else None
    if match is None:
        return await handler(request)
    expected = request.app[settings_key].shopify_access_token.get_secret_value()
    given = request.headers.get("X-Shopify-Access-Token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        message = "[API] Invalid API key or access token (unrecognized login or wrong password)"
        return web.json_response({"errors": message}, status=401)
    variables = body.get("variables")
    variables = variables if isinstance(variables, dict) else {}
    state = request.app[webhooks_key]
    operation = match.group(1)
    if operation == "shop":
        return _shop()
    if operation == "webhookSubscriptions":
        return _list(state, variables)
    version = request.path.split("/")[4]
    return _create(state, variables, version)


async def control_subscriptions(request: web.Request) -> web.Response:
    subscriptions = list(request.app[webhooks_key].subscriptions.values())
    return web.json_response({"webhookSubscriptions": subscriptions})


def setup(app: web.Application) -> None:
    """State, control route, and the middleware (after ``faults.setup``'s)."""
    state = WebhooksState()
    app[webhooks_key] = state
    on_reset(app, state.reset)
    app.middlewares.append(webhooks_middleware)
    app.router.add_get("/_sandbox/shopify/webhook-subscriptions", control_subscriptions)
