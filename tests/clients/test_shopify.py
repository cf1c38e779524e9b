"""ShopifyClient: tagsAdd/tagsRemove over GraphQL, customer reads over REST."""

from __future__ import annotations

import json
from decimal import Decimal

import aiohttp
import pytest
from aiolimiter import AsyncLimiter
from aioresponses import aioresponses
from yarl import URL

from shared.clients.shopify import (
    TAGS_ADD,
    TAGS_REMOVE,
    ShopifyClient,
    ShopifyCustomer,
    customer_gid,
)
from shared.errors import ProviderRejectedError, ProviderUnavailableError
from shared.settings import ProviderSettings
from tests.conftest import FIXTURES

BASE = "https://shop.test"
TOKEN = "shpat_test_token"
GRAPHQL = f"{BASE}/admin/api/2026-07/graphql.json"
CUSTOMER = f"{BASE}/admin/api/2026-07/customers/207119551.json"

OK_ADD = {
    "data": {"tagsAdd": {"node": {"id": "gid://shopify/Customer/207119551"}, "userErrors": []}},
    "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10}},
}


def throttled(requested: float, available: float, restore_rate: float) -> dict:
    return {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": None,
                "throttleStatus": {
                    "maximumAvailable": 2000.0,
                    "currentlyAvailable": available,
                    "restoreRate": restore_rate,
                },
            }
        },
    }


@pytest.fixture
def shopify(session: aiohttp.ClientSession, limiter: AsyncLimiter) -> ShopifyClient:
    return ShopifyClient(
        session, base_url=BASE + "/", access_token=TOKEN, api_version="2026-07", limiter=limiter
    )


def sent(mock_http: aioresponses, method: str = "POST", url: str = GRAPHQL) -> list:
    return mock_http.requests.get((method, URL(url)), [])


async def test_tags_add_sends_the_documented_mutation_and_token(mock_http, shopify):
    mock_http.post(GRAPHQL, payload=OK_ADD)

    await shopify.add_customer_tags(207119551, ["Gold", "VIP"])

    (call,) = sent(mock_http)
    assert call.kwargs["headers"] == {"X-Shopify-Access-Token": TOKEN}
    assert call.kwargs["json"] == {
        "query": (
            "mutation tagsAdd($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) "
            "{ node { id } userErrors { field message } } }"
        ),
        "variables": {"id": "gid://shopify/Customer/207119551", "tags": ["Gold", "VIP"]},
    }


async def test_tags_remove_sends_the_tags_remove_mutation(mock_http, shopify):
    mock_http.post(GRAPHQL, payload={"data": {"tagsRemove": {"node": None, "userErrors": []}}})

    await shopify.remove_customer_tags("gid://shopify/Customer/207119551", ["Silver"])

    (call,) = sent(mock_http)
    assert call.kwargs["json"]["query"] == TAGS_REMOVE
    assert call.kwargs["json"]["variables"]["id"] == "gid://shopify/Customer/207119551"
    assert TAGS_ADD != TAGS_REMOVE


def test_a_numeric_id_becomes_a_customer_gid_and_a_gid_passes_through():
    assert customer_gid(207119551) == "gid://shopify/Customer/207119551"
    assert customer_gid("207119551") == "gid://shopify/Customer/207119551"
    assert customer_gid("gid://shopify/Customer/5") == "gid://shopify/Customer/5"
    with pytest.raises(ValueError, match="not a Shopify customer id"):
        customer_gid("gid://shopify/Order/5")


async def test_no_tags_sends_nothing(mock_http, shopify):
    await shopify.add_customer_tags(1, [])

    assert sent(mock_http) == []


async def test_user_errors_are_permanent_and_carry_their_messages(mock_http, shopify):
    body = {
        "data": {
            "tagsAdd": {
                "node": None,
                "userErrors": [{"field": ["id"], "message": "Customer does not exist"}],
            }
        }
    }
    mock_http.post(GRAPHQL, payload=body, repeat=True)

    with pytest.raises(ProviderRejectedError, match="id: Customer does not exist") as caught:
        await shopify.add_customer_tags(1, ["Gold"])

    assert caught.value.provider == "shopify"
    assert len(sent(mock_http)) == 1


async def test_throttled_on_http_200_is_transient_with_retry_after_from_the_cost(
    session, limiter, mock_http
):
    client = ShopifyClient(
        session,
        base_url=BASE,
        access_token=TOKEN,
        api_version="2026-07",
        limiter=limiter,
        max_tries=1,
    )
    mock_http.post(GRAPHQL, payload=throttled(requested=502, available=2, restore_rate=100))

    with pytest.raises(ProviderUnavailableError) as caught:
        await client.add_customer_tags(1, ["Gold"])

    assert caught.value.status == 200
    assert caught.value.retry_after_s == pytest.approx(5.0)


async def test_a_throttle_wait_is_at_least_one_second(session, limiter, mock_http):
    client = ShopifyClient(
        session,
        base_url=BASE,
        access_token=TOKEN,
        api_version="2026-07",
        limiter=limiter,
        max_tries=1,
    )
    mock_http.post(GRAPHQL, payload=throttled(requested=10, available=5, restore_rate=100))

    with pytest.raises(ProviderUnavailableError) as caught:
        await client.add_customer_tags(1, ["Gold"])

    assert caught.value.retry_after_s == 1.0


async def test_a_long_throttle_is_raised_at_once_for_the_caller_to_requeue(mock_http, shopify):
    mock_http.post(GRAPHQL, payload=throttled(requested=1000, available=0, restore_rate=50))

    with pytest.raises(ProviderUnavailableError) as caught:
        await shopify.add_customer_tags(1, ["Gold"])

    assert caught.value.retry_after_s == pytest.approx(20.0)
    assert len(sent(mock_http)) == 1


async def test_other_graphql_errors_are_permanent(mock_http, shopify):
    body = {"errors": [{"message": "Field 'tagz' doesn't exist", "extensions": {"code": "x"}}]}
    mock_http.post(GRAPHQL, payload=body, repeat=True)

    with pytest.raises(ProviderRejectedError, match="Field 'tagz' doesn't exist"):
        await shopify.add_customer_tags(1, ["Gold"])

    assert len(sent(mock_http)) == 1


async def test_http_429_with_retry_after_is_retried_then_succeeds(mock_http, shopify):
    mock_http.post(GRAPHQL, status=429, headers={"Retry-After": "0.01"})
    mock_http.post(GRAPHQL, payload=OK_ADD)

    await shopify.add_customer_tags(1, ["Gold"])

    assert len(sent(mock_http)) == 2


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_auth_and_not_found_statuses_are_permanent(mock_http, shopify, status):
    mock_http.post(GRAPHQL, status=status, payload={"errors": "nope"}, repeat=True)

    with pytest.raises(ProviderRejectedError) as caught:
        await shopify.add_customer_tags(1, ["Gold"])

    assert caught.value.status == status
    assert TOKEN not in str(caught.value)
    assert len(sent(mock_http)) == 1


async def test_get_customer_parses_the_comma_separated_tags(mock_http, shopify):
    body = {
        "customer": {
            "id": 207119551,
            "email": "bob.norman@mail.example.com",
            "first_name": "Bob",
            "last_name": "Norman",
            "tags": "L\u00e9on, No\u00ebl",
            "orders_count": 1,
        }
    }
    mock_http.get(CUSTOMER, payload=body)

    customer = await shopify.get_customer("gid://shopify/Customer/207119551")

    assert customer == ShopifyCustomer(
        id=207119551,
        email="bob.norman@mail.example.com",
        first_name="Bob",
        last_name="Norman",
        tags=["L\u00e9on", "No\u00ebl"],
    )
    (call,) = sent(mock_http, "GET", CUSTOMER)
    assert call.kwargs["headers"] == {"X-Shopify-Access-Token": TOKEN}


async def test_get_customer_reads_empty_tags_as_an_empty_list(mock_http, shopify):
    mock_http.get(CUSTOMER, payload={"customer": {"id": 207119551, "tags": ""}})

    customer = await shopify.get_customer(207119551)

    assert customer.tags == []


async def test_get_customer_of_an_unknown_id_is_permanent(mock_http, shopify):
    mock_http.get(CUSTOMER, status=404, payload={"errors": "Not Found"})

    with pytest.raises(ProviderRejectedError) as caught:
        await shopify.get_customer(207119551)

    assert caught.value.status == 404


async def test_from_settings_uses_the_configured_url_version_and_token(session, mock_http):
    settings = ProviderSettings(
        shopify_base_url="http://sandbox.test/shopify",
        shopify_api_version="2025-01",
        shopify_access_token="from-settings",
    )
    client = ShopifyClient.from_settings(session, settings)
    url = "http://sandbox.test/shopify/admin/api/2025-01/graphql.json"
    mock_http.post(url, payload=OK_ADD)

    await client.add_customer_tags(1, ["Gold"])

    (call,) = sent(mock_http, "POST", url)
    assert call.kwargs["headers"] == {"X-Shopify-Access-Token": "from-settings"}


ORDER = f"{BASE}/admin/api/2026-07/orders/450789469.json"


async def test_get_order_reads_the_reference_order_net_of_its_refund(mock_http, shopify):
    body = json.loads((FIXTURES / "shopify_order_get_450789469.response.json").read_text())
    mock_http.get(ORDER, payload=body)

    order = await shopify.get_order(450789469)

    assert order.id == 450789469 and order.currency == "USD"
    assert order.current_subtotal_price == Decimal(body["order"]["current_subtotal_price"])
    assert order.customer is not None and order.customer.id == 207119551
    (call,) = sent(mock_http, "GET", ORDER)
    assert call.kwargs["headers"] == {"X-Shopify-Access-Token": TOKEN}


async def test_get_order_of_an_unknown_id_is_permanent(mock_http, shopify):
    mock_http.get(ORDER, status=404, payload={"errors": "Not Found"})

    with pytest.raises(ProviderRejectedError) as caught:
        await shopify.get_order("450789469")

    assert caught.value.status == 404
