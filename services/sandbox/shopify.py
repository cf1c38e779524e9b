"""The Shopify Admin API subset crmsync uses: customer tags, GraphQL and REST.

``http://HOST:PORT/shopify`` stands in for ``https://{shop}.myshopify.com``
(reference/shopify/ADMIN_API.md §B1). Every request needs ``X-Shopify-Access-Token``
equal to ``ProviderSettings.shopify_access_token``, else 401 ``{"errors": "[API] Invalid
API key or access token (unrecognized login or wrong password)"}``.

- ``POST /shopify/admin/api/{version}/graphql.json``: the ``tagsAdd`` / ``tagsRemove``
  mutations on customers (see :func:`graphql`).
- ``GET|PUT /shopify/admin/api/{version}/customers/{id}.json``: the REST customer, tags
  as one comma-separated string (admin-rest-2026-07/customer_get_207119551.response.json,
  customer_update_tags.request.json).
- ``GET /shopify/admin/api/{version}/orders/{id}.json``: an order seeded through the
  control route, as ``{"order": {...}}`` (admin-rest-2026-07/order_get_450789469.response.json);
  404 ``{"errors": "Not Found"}`` otherwise.

Control routes (tags as a list): ``GET /_sandbox/shopify/customers``,
``GET /_sandbox/shopify/customers/{id}``, ``POST /_sandbox/shopify/customers``
(:class:`SeedCustomer`), ``POST /_sandbox/shopify/strict`` ``{"strict": bool}``,
``POST /_sandbox/shopify/orders`` (an order object, bare or ``{"order": {...}}``; it
replaces the order of that id).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from services.sandbox.control import (
    control_error,
    on_reset,
    read_json_object,
    settings_key,
    validation_message,
)
from services.sandbox.faults import register_provider

_GID = re.compile(r"^gid://shopify/Customer/(\d+)$")
# Finds the mutation field; a regex on the query text, not a GraphQL parser.
_MUTATION = re.compile(r"\b(tagsAdd|tagsRemove)\s*\(")
_INVALID_LOGIN_MESSAGE = (
    "[API] Invalid API key or access token (unrecognized login or wrong password)"
)
# The cost extension every GraphQL answer carries (ADMIN_API.md §C, GraphQL Admin API).
_COST = {
    "requestedQueryCost": 10,
    "actualQueryCost": 10,
    "throttleStatus": {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1990,
        "restoreRate": 100.0,
    },
}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class Customer:
    """A Shopify customer as the sandbox keeps it; ``tags`` in the order they were added."""

    id: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    def to_rest(self) -> dict[str, Any]:
        """The REST shape of customer_get_207119551.response.json (a subset of fields)."""
        return {
            "id": self.id,
            "email": self.email,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "orders_count": 0,
            "state": "disabled",
            "note": None,
            "verified_email": True,
            "tax_exempt": False,
            "tags": ", ".join(self.tags),
            "currency": "USD",
            "phone": None,
            "admin_graphql_api_id": f"gid://shopify/Customer/{self.id}",
        }

    def to_control(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class ShopifyState:
    """Customers by id; ``strict`` makes unknown customers an error instead of new ones."""

    customers: dict[int, Customer] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    strict: bool = False

    def reset(self) -> None:
        self.customers.clear()
        self.orders.clear()
        self.strict = False


shopify_key = web.AppKey("sandbox_shopify", ShopifyState)


def parse_tags(tags: list[str] | str) -> list[str]:
    """Tags from a list or one comma-separated string, trimmed, blanks dropped."""
    parts = tags.split(",") if isinstance(tags, str) else tags
    return [tag.strip() for tag in parts if tag.strip()]


def add_tags(current: list[str], new: list[str]) -> list[str]:
    """``current`` plus each new tag not already there; Shopify tags ignore case."""
    result = list(current)
    seen = {tag.lower() for tag in result}
    for tag in new:
        if tag.lower() not in seen:
            seen.add(tag.lower())
            result.append(tag)
    return result


def remove_tags(current: list[str], gone: list[str]) -> list[str]:
    """``current`` without the given tags, compared without case."""
    drop = {tag.lower() for tag in gone}
    return [tag for tag in current if tag.lower() not in drop]


def shopify_error_body(status: int) -> dict[str, Any]:
    """Shopify REST error bodies: ``{"errors": "<message>"}``."""
    if status == 429:
        return {
            "errors": "Exceeded 2 calls per second for api client. "
            "Reduce request rates to resume uninterrupted service."
        }
    if status >= 500:
        return {"errors": "Internal Server Error"}
    return {"errors": "Not Found" if status == 404 else "Bad Request"}


def _denied(request: web.Request) -> web.Response | None:
    expected = request.app[settings_key].shopify_access_token.get_secret_value()
    given = request.headers.get("X-Shopify-Access-Token", "")
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    return web.json_response({"errors": _INVALID_LOGIN_MESSAGE}, status=401)


def _graphql_error(message: str, code: str) -> web.Response:
    return web.json_response({"errors": [{"message": message, "extensions": {"code": code}}]})


async def graphql(request: web.Request) -> web.Response:
    """``tagsAdd`` / ``tagsRemove`` (ADMIN_API.md §B1), found by a regex on ``query``.

    Variables: ``{"id": "gid://shopify/Customer/<n>", "tags": [..] | "a, b"}``.
    Answer 200: ``{"data": {"<op>": {"node": {"id": gid}, "userErrors": []}},
    "extensions": {"cost": ...}}``; an unknown customer is created unless strict, where
    ``node`` is null and ``userErrors`` says ``Customer does not exist``. A body the
    sandbox cannot serve gets 200 ``{"errors": [{"message", "extensions": {"code"}}]}``.
    """
    if (denied := _denied(request)) is not None:
        return denied
    body = await read_json_object(request)
    if body is None or not isinstance(body.get("query"), str):
        return _graphql_error("Body must be JSON with a string 'query'", "BAD_REQUEST")
    operations = set(_MUTATION.findall(body["query"]))
    if len(operations) != 1:
        return _graphql_error(
            "The sandbox serves exactly one of tagsAdd or tagsRemove per request",
            "UNSUPPORTED_BY_SANDBOX",
        )
    operation = operations.pop()
    variables = body.get("variables")
    variables = variables if isinstance(variables, dict) else {}
    gid, tags = variables.get("id"), variables.get("tags")
    match = _GID.match(gid) if isinstance(gid, str) else None
    if match is None:
        return _graphql_error(
            "Variable $id must be a gid://shopify/Customer/<n>", "INVALID_VARIABLE"
        )
    if not (
        isinstance(tags, str) or (isinstance(tags, list) and all(isinstance(t, str) for t in tags))
    ):
        return _graphql_error("Variable $tags must be [String!]! or a string", "INVALID_VARIABLE")

    state = request.app[shopify_key]
    customer_id = int(match.group(1))
    customer = state.customers.get(customer_id)
    if customer is None and state.strict:
        payload: dict[str, Any] = {
            "node": None,
            "userErrors": [{"field": ["id"], "message": "Customer does not exist"}],
        }
        return web.json_response({"data": {operation: payload}, "extensions": {"cost": _COST}})
    if customer is None:
        # The real customer exists: they placed the order that got us here.
        customer = state.customers[customer_id] = Customer(customer_id)
    change = add_tags if operation == "tagsAdd" else remove_tags
    customer.tags = change(customer.tags, parse_tags(tags))
    customer.updated_at = _now()
    payload = {"node": {"id": gid}, "userErrors": []}
    return web.json_response({"data": {operation: payload}, "extensions": {"cost": _COST}})


def _customer_id(request: web.Request) -> int | None:
    raw = request.match_info["id"]
    return int(raw) if raw.isdigit() else None


def _find(request: web.Request) -> Customer | None:
    customer_id = _customer_id(request)
    return None if customer_id is None else request.app[shopify_key].customers.get(customer_id)


async def get_customer(request: web.Request) -> web.Response:
    """``{"customer": {...}}`` (customer_get_207119551.response.json).

    A customer the sandbox has not seen yet reads as one without tags (the real
    customer exists: they placed the order), as GraphQL treats it; 404 in strict mode
    or for an id that is not a number.
    """
    if (denied := _denied(request)) is not None:
        return denied
    customer = _find(request)
    customer_id = _customer_id(request)
    if customer is None and (customer_id is None or request.app[shopify_key].strict):
        return web.json_response({"errors": "Not Found"}, status=404)
    if customer is None:
        assert customer_id is not None
        customer = Customer(customer_id)
    return web.json_response({"customer": customer.to_rest()})


async def get_order(request: web.Request) -> web.Response:
    """``{"order": {...}}`` as seeded, 404 ``{"errors": "Not Found"}`` when unknown."""
    if (denied := _denied(request)) is not None:
        return denied
    order_id = _customer_id(request)
    order = None if order_id is None else request.app[shopify_key].orders.get(order_id)
    if order is None:
        return web.json_response({"errors": "Not Found"}, status=404)
    return web.json_response({"order": order})


async def seed_order(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    order = body.get("order", body) if body is not None else None
    if not isinstance(order, dict) or not isinstance(order.get("id"), int):
        return control_error(422, "body must be an order object with an integer id")
    request.app[shopify_key].orders[order["id"]] = order
    return web.json_response({"id": order["id"]}, status=201)


async def put_customer(request: web.Request) -> web.Response:
    """Replace tags (and email, names) from ``{"customer": {"tags": "a, b"}}``.

    Shape: customer_update_tags.request.json / .response.json. An unknown customer is
    created unless strict (404 then), as for GraphQL.
    """
    if (denied := _denied(request)) is not None:
        return denied
    body = await read_json_object(request)
    fields = body.get("customer") if body is not None else None
    if not isinstance(fields, dict):
        return web.json_response(
            {"errors": {"customer": "Required parameter missing or invalid"}}, status=400
        )
    if "tags" in fields and not isinstance(fields["tags"], str):
        return web.json_response({"errors": {"tags": ["must be a string"]}}, status=422)
    state = request.app[shopify_key]
    customer_id = _customer_id(request)
    customer = _find(request)
    if customer is None:
        if customer_id is None or state.strict:
            return web.json_response({"errors": "Not Found"}, status=404)
        customer = state.customers[customer_id] = Customer(customer_id)
    if "tags" in fields:
        customer.tags = add_tags([], parse_tags(fields["tags"]))
    for name in ("email", "first_name", "last_name"):
        if name in fields:
            setattr(customer, name, fields[name])
    customer.updated_at = _now()
    return web.json_response({"customer": customer.to_rest()})


class SeedCustomer(BaseModel):
    """The body of ``POST /_sandbox/shopify/customers``; replaces a customer of that id."""

    model_config = ConfigDict(extra="forbid")

    id: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = []


async def seed_customer(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    try:
        seed = SeedCustomer.model_validate(body)
    except ValidationError as exc:
        return control_error(422, validation_message(exc))
    customer = Customer(
        seed.id, seed.email, seed.first_name, seed.last_name, add_tags([], parse_tags(seed.tags))
    )
    request.app[shopify_key].customers[seed.id] = customer
    return web.json_response(customer.to_control(), status=201)


async def control_customer(request: web.Request) -> web.Response:
    customer = _find(request)
    if customer is None:
        return control_error(404, "no such customer")
    return web.json_response(customer.to_control())


async def control_customers(request: web.Request) -> web.Response:
    customers = request.app[shopify_key].customers.values()
    return web.json_response({"customers": [c.to_control() for c in customers]})


async def set_strict(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    if body is None or not isinstance(body.get("strict"), bool):
        return control_error(422, 'body must be {"strict": true|false}')
    request.app[shopify_key].strict = body["strict"]
    return web.json_response({"strict": body["strict"]})


def setup(app: web.Application) -> None:
    """Add the Shopify routes, their state and their fault body. Needs ``faults.setup``."""
    state = ShopifyState()
    app[shopify_key] = state
    on_reset(app, state.reset)
    register_provider(app, "shopify", shopify_error_body)
    api = "/shopify/admin/api/{version}"
    app.router.add_post(f"{api}/graphql.json", graphql)
    app.router.add_get(f"{api}/customers/{{id}}.json", get_customer)
    app.router.add_put(f"{api}/customers/{{id}}.json", put_customer)
    app.router.add_get(f"{api}/orders/{{id}}.json", get_order)
    app.router.add_get("/_sandbox/shopify/customers", control_customers)
    app.router.add_get("/_sandbox/shopify/customers/{id}", control_customer)
    app.router.add_post("/_sandbox/shopify/customers", seed_customer)
    app.router.add_post("/_sandbox/shopify/strict", set_strict)
    app.router.add_post("/_sandbox/shopify/orders", seed_order)
