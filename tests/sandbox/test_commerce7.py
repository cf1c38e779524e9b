"""The sandbox's Commerce7 API: club memberships per tenant, auth, validation."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient as Client

from tests.sandbox.conftest import C7_APP_ID, C7_HEADERS, basic_auth

MEMBERSHIPS = "/commerce7/v1/club-membership"


async def create(client: Client[Any, Any], tenant: str = "testing", **body: Any) -> Any:
    body = {"customerId": "cust-1", "clubId": "club-gold", **body}
    resp = await client.post(MEMBERSHIPS, json=body, headers={**C7_HEADERS, "tenant": tenant})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_create_returns_an_active_membership(client: Client[Any, Any]) -> None:
    membership = await create(
        client, orderDeliveryMethod="Ship", signupDate="2026-01-05T00:00:00.000Z"
    )

    assert membership["customerId"] == "cust-1"
    assert membership["clubId"] == "club-gold"
    assert membership["status"] == "Active"
    assert membership["cancelDate"] is None
    assert membership["cancellationReason"] is None
    assert membership["orderDeliveryMethod"] == "Ship"
    assert membership["signupDate"] == "2026-01-05T00:00:00.000Z"
    assert membership["billToCustomerAddressId"] is None
    assert {"id", "createdAt", "updatedAt", "customerCreditCardId"} <= membership.keys()

    resp = await client.get(f"{MEMBERSHIPS}/{membership['id']}", headers=C7_HEADERS)
    assert await resp.json() == membership


@pytest.mark.parametrize(
    "body", [{"clubId": "club-gold"}, {"customerId": "cust-1"}, {"customerId": "", "clubId": "c"}]
)
async def test_create_without_customer_or_club_is_422(
    client: Client[Any, Any], body: dict[str, Any]
) -> None:
    resp = await client.post(MEMBERSHIPS, json=body, headers=C7_HEADERS)

    assert resp.status == 422
    answer = await resp.json()
    assert answer["statusCode"] == 422
    assert answer["type"] == "validationError"
    assert answer["message"]


async def test_list_filters_by_customer_and_club(client: Client[Any, Any]) -> None:
    gold = await create(client)
    silver = await create(client, clubId="club-silver")
    await create(client, customerId="cust-2")

    resp = await client.get(MEMBERSHIPS, params={"customerId": "cust-1"}, headers=C7_HEADERS)
    by_club = await client.get(
        MEMBERSHIPS, params={"customerId": "cust-1", "clubId": "club-silver"}, headers=C7_HEADERS
    )

    assert await resp.json() == {"clubMemberships": [gold, silver], "total": 2}
    assert await by_club.json() == {"clubMemberships": [silver], "total": 1}


async def test_list_pages_with_limit_and_page(client: Client[Any, Any]) -> None:
    made = [await create(client, clubId=f"club-{n}") for n in range(5)]

    resp = await client.get(MEMBERSHIPS, params={"limit": "2", "page": "3"}, headers=C7_HEADERS)
    too_big = await client.get(MEMBERSHIPS, params={"limit": "51"}, headers=C7_HEADERS)

    assert await resp.json() == {"clubMemberships": made[4:], "total": 5}
    assert too_big.status == 422


async def test_cancel_sets_the_date_reason_and_status(client: Client[Any, Any]) -> None:
    membership = await create(client)

    resp = await client.put(
        f"{MEMBERSHIPS}/{membership['id']}",
        json={"cancelDate": "2026-02-01T00:00:00.000Z", "cancellationReason": "Other"},
        headers=C7_HEADERS,
    )

    assert resp.status == 200
    cancelled = await resp.json()
    assert cancelled["status"] == "Cancelled"
    assert cancelled["cancelDate"] == "2026-02-01T00:00:00.000Z"
    assert cancelled["cancellationReason"] == "Other"
    control = await client.get(
        "/_sandbox/commerce7/testing/club-memberships", params={"customerId": "cust-1"}
    )
    assert await control.json() == {"clubMemberships": [cancelled]}


@pytest.mark.parametrize(
    "body",
    [
        {"cancelDate": "2026-02-01T00:00:00.000Z"},
        {"cancelDate": "2026-02-01T00:00:00.000Z", "cancellationReason": "Bored"},
        {"cancelDate": "yesterday", "cancellationReason": "Other"},
    ],
)
async def test_cancel_without_a_listed_reason_is_422(
    client: Client[Any, Any], body: dict[str, Any]
) -> None:
    membership = await create(client)

    resp = await client.put(f"{MEMBERSHIPS}/{membership['id']}", json=body, headers=C7_HEADERS)

    assert resp.status == 422
    assert (await resp.json())["type"] == "validationError"
    unchanged = await client.get(f"{MEMBERSHIPS}/{membership['id']}", headers=C7_HEADERS)
    assert (await unchanged.json())["status"] == "Active"


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_an_unknown_membership_is_404(client: Client[Any, Any], method: str) -> None:
    resp = await client.request(method, f"{MEMBERSHIPS}/nope", json={}, headers=C7_HEADERS)

    assert resp.status == 404
    assert (await resp.json())["type"] == "notFound"


async def test_tenants_do_not_see_each_other(client: Client[Any, Any]) -> None:
    await create(client, tenant="winery-a")

    resp = await client.get(MEMBERSHIPS, headers={**C7_HEADERS, "tenant": "winery-b"})

    assert await resp.json() == {"clubMemberships": [], "total": 0}


async def test_a_missing_tenant_is_400(client: Client[Any, Any]) -> None:
    headers = {"Authorization": C7_HEADERS["Authorization"]}

    resp = await client.get(MEMBERSHIPS, headers=headers)

    assert resp.status == 400
    assert (await resp.json())["statusCode"] == 400


@pytest.mark.parametrize(
    "authorization",
    [None, basic_auth(C7_APP_ID, "wrong"), basic_auth("other-app", "x"), "Basic !!!", "Bearer x"],
)
async def test_bad_credentials_are_401(client: Client[Any, Any], authorization: str | None) -> None:
    headers = {"tenant": "testing"}
    if authorization is not None:
        headers["Authorization"] = authorization

    resp = await client.post(MEMBERSHIPS, json={"customerId": "c", "clubId": "k"}, headers=headers)

    assert resp.status == 401
    answer = await resp.json()
    assert answer["statusCode"] == 401
    assert answer["type"] == "unauthorized"
    listed = await client.get("/_sandbox/commerce7/testing/club-memberships")
    assert (await listed.json())["clubMemberships"] == []
