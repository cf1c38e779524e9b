"""The sandbox as a whole: fault injection, the request log, reset, health."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient as Client

from services.sandbox.faults import faults_key
from tests.sandbox.conftest import C7_HEADERS, SHOPIFY_API, SHOPIFY_HEADERS

CUSTOMER = f"{SHOPIFY_API}/customers/1.json"


async def add_fault(client: Client[Any, Any], **spec: Any) -> str:
    resp = await client.post("/_sandbox/faults", json=spec)
    assert resp.status == 201, await resp.text()
    fault_id: str = (await resp.json())["id"]
    return fault_id


async def seed_customer(client: Client[Any, Any]) -> None:
    resp = await client.post("/_sandbox/shopify/customers", json={"id": 1, "tags": ["VIP"]})
    assert resp.status == 201


async def get_customer(client: Client[Any, Any]) -> Any:
    return await client.get(CUSTOMER, headers=SHOPIFY_HEADERS)


async def test_health_answers_200(client: Client[Any, Any]) -> None:
    resp = await client.get("/_sandbox/health")

    assert resp.status == 200


async def test_a_counted_429_answers_with_retry_after_then_succeeds(
    client: Client[Any, Any],
) -> None:
    await seed_customer(client)
    await add_fault(client, provider="shopify", status=429, count=2, retry_after_s=1.5)

    first, second, third = [await get_customer(client) for _ in range(3)]

    for throttled in (first, second):
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "1.5"
        assert (await throttled.json())["errors"].startswith("Exceeded 2 calls per second")
    assert third.status == 200
    assert "Retry-After" not in third.headers
    faults = await (await client.get("/_sandbox/faults")).json()
    assert faults["faults"][0]["count"] == 0
    assert faults["faults"][0]["hits"] == 2


@pytest.mark.parametrize(
    ("provider", "path", "status", "expected"),
    [
        ("shopify", CUSTOMER, 500, {"errors": "Internal Server Error"}),
        ("commerce7", "/commerce7/v1/club-membership", 429, {"type": "tooManyRequests"}),
        ("commerce7", "/commerce7/v1/club-membership", 503, {"type": "serverError"}),
        ("hubspot", "/hubspot/crm/v3/objects/contacts", 429, {"errorType": "RATE_LIMIT"}),
        ("hubspot", "/hubspot/crm/v3/objects/contacts", 502, {"category": "INTERNAL_ERROR"}),
    ],
)
async def test_faults_answer_in_the_provider_s_error_shape(
    client: Client[Any, Any], provider: str, path: str, status: int, expected: dict[str, Any]
) -> None:
    await add_fault(client, provider=provider, status=status)

    resp = await client.get(path)

    assert resp.status == status
    body = await resp.json()
    assert expected.items() <= body.items()
    if provider == "commerce7":
        assert body["statusCode"] == status
    if provider == "hubspot":
        assert body["status"] == "error"
        assert body["correlationId"]


async def test_a_fault_body_replaces_the_default(client: Client[Any, Any]) -> None:
    await add_fault(client, provider="shopify", status=503, body={"errors": "maintenance"})

    resp = await get_customer(client)

    assert resp.status == 503
    assert await resp.json() == {"errors": "maintenance"}


async def test_a_fault_matches_only_its_provider_path_and_method(
    client: Client[Any, Any],
) -> None:
    await seed_customer(client)
    await add_fault(client, provider="shopify", path=r"/graphql\.json$", method="post", status=500)

    rest = await get_customer(client)
    other_provider = await client.get("/commerce7/v1/club-membership", headers=C7_HEADERS)
    graphql = await client.post(
        f"{SHOPIFY_API}/graphql.json", json={"query": "x"}, headers=SHOPIFY_HEADERS
    )

    assert (rest.status, other_provider.status, graphql.status) == (200, 200, 500)


async def test_a_fault_without_count_applies_until_deleted(client: Client[Any, Any]) -> None:
    await seed_customer(client)
    fault_id = await add_fault(client, provider="shopify", status=500)

    statuses = [(await get_customer(client)).status for _ in range(3)]
    deleted = await client.delete(f"/_sandbox/faults/{fault_id}")
    again = await client.delete(f"/_sandbox/faults/{fault_id}")

    assert statuses == [500, 500, 500]
    assert (deleted.status, again.status) == (200, 404)
    assert (await get_customer(client)).status == 200


async def test_deleting_all_faults_clears_the_list(client: Client[Any, Any]) -> None:
    await add_fault(client, provider="shopify", status=500)
    await add_fault(client, provider="commerce7", latency_ms=5)

    listed = await (await client.get("/_sandbox/faults")).json()
    await client.delete("/_sandbox/faults")

    assert [f["provider"] for f in listed["faults"]] == ["shopify", "commerce7"]
    assert await (await client.get("/_sandbox/faults")).json() == {"faults": []}


async def test_a_rate_hits_about_that_share_of_requests(client: Client[Any, Any]) -> None:
    client.app[faults_key].rng = random.Random(7)
    await seed_customer(client)
    await add_fault(client, provider="shopify", status=503, rate=0.5)
    await add_fault(client, provider="commerce7", status=503, rate=0.0)

    shopify = [(await get_customer(client)).status for _ in range(100)]
    commerce7 = await client.get("/commerce7/v1/club-membership", headers=C7_HEADERS)

    assert set(shopify) == {200, 503}
    assert 30 <= shopify.count(503) <= 70
    assert commerce7.status == 200


async def test_latency_alone_delays_a_normal_answer(client: Client[Any, Any]) -> None:
    await seed_customer(client)
    await add_fault(client, provider="shopify", latency_ms=200, count=1)

    started = time.monotonic()
    slow = await get_customer(client)
    slow_s = time.monotonic() - started
    started = time.monotonic()
    fast = await get_customer(client)
    fast_s = time.monotonic() - started

    assert (slow.status, fast.status) == (200, 200)
    assert slow_s >= 0.2
    assert fast_s < 0.2


@pytest.mark.parametrize(
    "spec",
    [
        {"provider": "nowhere", "status": 500},
        {"provider": "shopify"},
        {"provider": "shopify", "status": 200},
        {"provider": "shopify", "status": 500, "rate": 1.5},
        {"provider": "shopify", "status": 500, "count": 0},
        {"provider": "shopify", "status": 500, "path": "("},
        {"provider": "shopify", "status": 500, "colour": "red"},
    ],
)
async def test_an_invalid_fault_is_422(client: Client[Any, Any], spec: dict[str, Any]) -> None:
    resp = await client.post("/_sandbox/faults", json=spec)

    assert resp.status == 422
    assert (await resp.json())["error"]


async def test_the_request_log_records_provider_requests(client: Client[Any, Any]) -> None:
    await seed_customer(client)
    await add_fault(client, provider="shopify", status=429, count=1)
    await get_customer(client)
    await get_customer(client)
    await client.get(CUSTOMER)  # no token
    await client.get("/commerce7/v1/club-membership", headers=C7_HEADERS)

    shopify = await (await client.get("/_sandbox/requests", params={"provider": "shopify"})).json()
    everything = await (await client.get("/_sandbox/requests")).json()

    logged = [(r["method"], r["path"], r["status"], r["fault"]) for r in shopify["requests"]]
    assert logged == [
        ("GET", CUSTOMER, 429, True),
        ("GET", CUSTOMER, 200, False),
        ("GET", CUSTOMER, 401, False),
    ]
    assert all(r["provider"] == "shopify" and "T" in r["at"] for r in shopify["requests"])
    assert len(everything["requests"]) == 4

    await client.delete("/_sandbox/requests")
    assert await (await client.get("/_sandbox/requests")).json() == {"requests": []}


async def test_the_request_log_records_unknown_provider_routes_as_404(
    client: Client[Any, Any],
) -> None:
    resp = await client.get(f"{SHOPIFY_API}/orders.json", headers=SHOPIFY_HEADERS)

    log = await (await client.get("/_sandbox/requests")).json()
    assert resp.status == 404
    assert log["requests"][0]["status"] == 404


async def test_reset_clears_state_faults_and_log(client: Client[Any, Any]) -> None:
    await seed_customer(client)
    await client.post("/_sandbox/shopify/strict", json={"strict": True})
    await client.post(
        "/commerce7/v1/club-membership",
        json={"customerId": "c", "clubId": "k"},
        headers=C7_HEADERS,
    )
    await add_fault(client, provider="shopify", status=500, path="/never")

    resp = await client.post("/_sandbox/reset")

    assert resp.status == 200
    assert (await client.get("/_sandbox/shopify/customers/1")).status == 404
    assert await (await client.get("/_sandbox/faults")).json() == {"faults": []}
    assert await (await client.get("/_sandbox/requests")).json() == {"requests": []}
    memberships = await client.get("/_sandbox/commerce7/testing/club-memberships")
    assert await memberships.json() == {"clubMemberships": []}
    strict_gone = await client.post(
        f"{SHOPIFY_API}/graphql.json",
        json={
            "query": "mutation { tagsAdd(id: $id, tags: $tags) { node { id } } }",
            "variables": {"id": "gid://shopify/Customer/2", "tags": ["x"]},
        },
        headers=SHOPIFY_HEADERS,
    )
    assert (await strict_gone.json())["data"]["tagsAdd"]["userErrors"] == []
