"""The sandbox's Shopify Admin API: tags by GraphQL and REST, strict mode, auth."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient as Client

from shared.clients.shopify import ShopifyClient
from tests.sandbox.conftest import SETTINGS, SHOPIFY_API, SHOPIFY_HEADERS

TAGS_ADD = (
    "mutation tagsAdd($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) "
    "{ node { id } userErrors { field message } } }"
)
TAGS_REMOVE = TAGS_ADD.replace("tagsAdd", "tagsRemove")


async def graphql(client: Client[Any, Any], body: Any, **headers: str) -> dict[str, Any]:
    resp = await client.post(
        f"{SHOPIFY_API}/graphql.json", json=body, headers={**SHOPIFY_HEADERS, **headers}
    )
    assert resp.status == 200
    result: dict[str, Any] = await resp.json()
    return result


async def change_tags(
    client: Client[Any, Any], customer_id: int, tags: Any, query: str = TAGS_ADD
) -> dict[str, Any]:
    gid = f"gid://shopify/Customer/{customer_id}"
    return await graphql(client, {"query": query, "variables": {"id": gid, "tags": tags}})


async def seed(client: Client[Any, Any], customer_id: int, tags: list[str]) -> None:
    body = {"id": customer_id, "email": "bob@example.com", "first_name": "Bob", "tags": tags}
    resp = await client.post("/_sandbox/shopify/customers", json=body)
    assert resp.status == 201


async def tags_of(client: Client[Any, Any], customer_id: int) -> list[str]:
    resp = await client.get(f"/_sandbox/shopify/customers/{customer_id}")
    assert resp.status == 200
    tags: list[str] = (await resp.json())["tags"]
    return tags


async def test_tags_add_keeps_other_tags(client: Client[Any, Any]) -> None:
    await seed(client, 207119551, ["Léon", "Noël"])

    answer = await change_tags(client, 207119551, ["Gold"])

    assert answer["data"]["tagsAdd"] == {
        "node": {"id": "gid://shopify/Customer/207119551"},
        "userErrors": [],
    }
    assert answer["extensions"]["cost"]["throttleStatus"]["restoreRate"] == 100.0
    assert await tags_of(client, 207119551) == ["Léon", "Noël", "Gold"]


async def test_tags_add_is_idempotent_and_ignores_case(client: Client[Any, Any]) -> None:
    await seed(client, 1, ["VIP"])

    await change_tags(client, 1, ["Gold"])
    await change_tags(client, 1, ["gold", "vip", "GOLD"])

    assert await tags_of(client, 1) == ["VIP", "Gold"]


async def test_tags_may_be_one_comma_separated_string(client: Client[Any, Any]) -> None:
    await change_tags(client, 2, " Gold ,  Member,, ")

    assert await tags_of(client, 2) == ["Gold", "Member"]


async def test_tags_remove_keeps_other_tags_and_ignores_case(client: Client[Any, Any]) -> None:
    await seed(client, 3, ["VIP", "Gold", "Wholesale"])

    answer = await change_tags(client, 3, ["gold"], TAGS_REMOVE)
    again = await change_tags(client, 3, "GOLD, Absent", TAGS_REMOVE)

    assert answer["data"]["tagsRemove"]["userErrors"] == []
    assert again["data"]["tagsRemove"]["userErrors"] == []
    assert await tags_of(client, 3) == ["VIP", "Wholesale"]


async def test_an_unknown_customer_is_created_on_first_use(client: Client[Any, Any]) -> None:
    answer = await change_tags(client, 99, ["Gold"])

    assert answer["data"]["tagsAdd"]["node"] == {"id": "gid://shopify/Customer/99"}
    assert await tags_of(client, 99) == ["Gold"]


async def test_strict_mode_answers_user_errors_for_an_unknown_customer(
    client: Client[Any, Any],
) -> None:
    resp = await client.post("/_sandbox/shopify/strict", json={"strict": True})
    assert resp.status == 200

    answer = await change_tags(client, 99, ["Gold"])

    assert answer["data"]["tagsAdd"] == {
        "node": None,
        "userErrors": [{"field": ["id"], "message": "Customer does not exist"}],
    }
    assert (await client.get("/_sandbox/shopify/customers/99")).status == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ shop { name } }"}, "UNSUPPORTED_BY_SANDBOX"),
        ({"variables": {}}, "BAD_REQUEST"),
        ({"query": TAGS_ADD, "variables": {"id": "42", "tags": ["a"]}}, "INVALID_VARIABLE"),
        (
            {"query": TAGS_ADD, "variables": {"id": "gid://shopify/Customer/1", "tags": 5}},
            "INVALID_VARIABLE",
        ),
    ],
)
async def test_a_query_the_sandbox_cannot_serve_gets_graphql_errors(
    client: Client[Any, Any], body: dict[str, Any], code: str
) -> None:
    answer = await graphql(client, body)

    assert answer["errors"][0]["extensions"]["code"] == code
    assert "data" not in answer


async def test_a_malformed_body_gets_graphql_errors(client: Client[Any, Any]) -> None:
    resp = await client.post(
        f"{SHOPIFY_API}/graphql.json", data=b"{not json", headers=SHOPIFY_HEADERS
    )

    assert resp.status == 200
    assert (await resp.json())["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_rest_get_shows_tags_as_one_string(client: Client[Any, Any]) -> None:
    await seed(client, 207119551, ["Léon"])
    await change_tags(client, 207119551, ["Noël"])

    resp = await client.get(f"{SHOPIFY_API}/customers/207119551.json", headers=SHOPIFY_HEADERS)

    assert resp.status == 200
    customer = (await resp.json())["customer"]
    assert customer["id"] == 207119551
    assert customer["tags"] == "Léon, Noël"
    assert customer["email"] == "bob@example.com"
    assert customer["admin_graphql_api_id"] == "gid://shopify/Customer/207119551"


async def test_rest_get_of_a_customer_not_seen_yet_has_no_tags(client: Client[Any, Any]) -> None:
    resp = await client.get(f"{SHOPIFY_API}/customers/404.json", headers=SHOPIFY_HEADERS)

    assert resp.status == 200
    assert (await resp.json())["customer"]["tags"] == ""


async def test_rest_get_of_an_unknown_customer_is_404_when_strict_or_not_a_number(
    client: Client[Any, Any],
) -> None:
    resp = await client.get(f"{SHOPIFY_API}/customers/abc.json", headers=SHOPIFY_HEADERS)
    assert resp.status == 404
    assert await resp.json() == {"errors": "Not Found"}
    await client.post("/_sandbox/shopify/strict", json={"strict": True})

    resp = await client.get(f"{SHOPIFY_API}/customers/404.json", headers=SHOPIFY_HEADERS)

    assert resp.status == 404


async def test_rest_get_order_serves_a_seeded_order_and_404_otherwise(
    client: Client[Any, Any],
) -> None:
    order = {"id": 450789469, "currency": "USD", "total_price": "10.00"}
    assert (await client.post("/_sandbox/shopify/orders", json={"order": order})).status == 201

    resp = await client.get(f"{SHOPIFY_API}/orders/450789469.json", headers=SHOPIFY_HEADERS)
    assert resp.status == 200
    assert await resp.json() == {"order": order}
    missing = await client.get(f"{SHOPIFY_API}/orders/1.json", headers=SHOPIFY_HEADERS)
    assert missing.status == 404
    unauthorised = await client.get(f"{SHOPIFY_API}/orders/450789469.json")
    assert unauthorised.status == 401


async def test_rest_put_replaces_the_tags(client: Client[Any, Any]) -> None:
    await seed(client, 5, ["Old"])

    resp = await client.put(
        f"{SHOPIFY_API}/customers/5.json",
        json={"customer": {"tags": "New Customer, Repeat Customer"}},
        headers=SHOPIFY_HEADERS,
    )

    assert resp.status == 200
    assert (await resp.json())["customer"]["tags"] == "New Customer, Repeat Customer"
    assert await tags_of(client, 5) == ["New Customer", "Repeat Customer"]


@pytest.mark.parametrize("token", [None, "wrong-token"])
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/graphql.json"), ("GET", "/customers/1.json")]
)
async def test_a_bad_token_is_401(
    client: Client[Any, Any], token: str | None, method: str, path: str
) -> None:
    headers = {} if token is None else {"X-Shopify-Access-Token": token}

    resp = await client.request(method, f"{SHOPIFY_API}{path}", json={}, headers=headers)

    assert resp.status == 401
    assert (await resp.json())["errors"].startswith("[API] Invalid API key or access token")


async def test_the_shopify_client_works_against_the_sandbox(client: Client[Any, Any]) -> None:
    settings = SETTINGS.model_copy(
        update={"shopify_base_url": str(client.make_url("/shopify")), "shopify_rate_per_s": 100}
    )
    await seed(client, 7, ["VIP"])
    async with aiohttp.ClientSession() as session:
        shopify = ShopifyClient.from_settings(session, settings)

        await shopify.add_customer_tags(7, ["Gold"])
        await shopify.remove_customer_tags("gid://shopify/Customer/7", ["VIP"])
        customer = await shopify.get_customer(7)

    assert customer.tags == ["Gold"]


async def test_the_shopify_client_retries_a_sandbox_429_after_retry_after(
    client: Client[Any, Any],
) -> None:
    settings = SETTINGS.model_copy(
        update={"shopify_base_url": str(client.make_url("/shopify")), "shopify_rate_per_s": 100}
    )
    fault = {"provider": "shopify", "status": 429, "count": 1, "retry_after_s": 0.05}
    assert (await client.post("/_sandbox/faults", json=fault)).status == 201
    async with aiohttp.ClientSession() as session:
        await ShopifyClient.from_settings(session, settings).add_customer_tags(8, ["Gold"])

    log = await (await client.get("/_sandbox/requests", params={"provider": "shopify"})).json()
    assert [(r["status"], r["fault"]) for r in log["requests"]] == [(429, True), (200, False)]
    assert await tags_of(client, 8) == ["Gold"]
