"""Commerce7Client: club memberships with Basic auth and the tenant header."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest
from aiolimiter import AsyncLimiter
from aioresponses import aioresponses
from aioresponses.core import normalize_url
from yarl import URL

from shared.clients.commerce7 import ClubMembership, ClubMembershipCreate, Commerce7Client
from shared.errors import ProviderRejectedError, ProviderUnavailableError
from shared.settings import ProviderSettings

BASE = "https://api.commerce7.test/v1"
MEMBERSHIPS = f"{BASE}/club-membership"
LIST_URL = f"{MEMBERSHIPS}?customerId=cust-1&clubId=club-gold&limit=50&page=1"
TENANT = "spectrawinery"


def membership(id_: str, club_id: str = "club-gold", cancel_date: str | None = None) -> dict:
    return {
        "id": id_,
        "customerId": "cust-1",
        "clubId": club_id,
        "signupDate": "2024-07-26T17:29:31.608Z",
        "cancelDate": cancel_date,
        "cancellationReason": "Other" if cancel_date else None,
        "status": "Cancelled" if cancel_date else "Active",
        "orderDeliveryMethod": "Pickup",
    }


NEW_MEMBERSHIP = ClubMembershipCreate(
    customer_id="cust-1",
    club_id="club-gold",
    signup_date=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
    customer_credit_card_id="card-1",
)


@pytest.fixture
def commerce7(session: aiohttp.ClientSession, limiter: AsyncLimiter) -> Commerce7Client:
    return Commerce7Client(
        session, base_url=BASE + "/", app_id="app-id", app_secret="app-secret", limiter=limiter
    )


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def sent(mock_http: aioresponses, method: str, url: str) -> list:
    # aioresponses keys requests by the URL with its query sorted.
    return mock_http.requests.get((method, normalize_url(URL(url))), [])


async def test_every_request_carries_the_tenant_header_and_basic_auth(mock_http, commerce7):
    mock_http.get(LIST_URL, payload={"clubMemberships": [membership("m-1")]})

    found = await commerce7.list_club_memberships(TENANT, customer_id="cust-1", club_id="club-gold")

    assert [m.id for m in found] == ["m-1"]
    (call,) = sent(mock_http, "GET", LIST_URL)
    assert call.kwargs["headers"] == {
        "Authorization": basic("app-id", "app-secret"),
        "tenant": TENANT,
        "Content-Type": "application/json",
    }
    assert call.kwargs["params"] == {
        "customerId": "cust-1",
        "clubId": "club-gold",
        "limit": "50",
        "page": "1",
    }


async def test_listing_without_a_club_filters_by_customer_only(mock_http, commerce7):
    url = f"{MEMBERSHIPS}?customerId=cust-1&limit=50&page=1"
    mock_http.get(url, payload={"clubMemberships": []})

    assert await commerce7.list_club_memberships(TENANT, customer_id="cust-1") == []


async def test_a_membership_parses_camel_case_and_dates(mock_http, commerce7):
    mock_http.get(LIST_URL, payload={"clubMemberships": [membership("m-1", cancel_date=None)]})

    (found,) = await commerce7.list_club_memberships(
        TENANT, customer_id="cust-1", club_id="club-gold"
    )

    assert found == ClubMembership(
        id="m-1",
        customer_id="cust-1",
        club_id="club-gold",
        signup_date=datetime(2024, 7, 26, 17, 29, 31, 608000, tzinfo=UTC),
        cancel_date=None,
        cancellation_reason=None,
        status="Active",
    )


async def test_listing_reads_every_page_of_50(mock_http, commerce7):
    first = [membership(f"m-{i}", cancel_date="2025-01-01T00:00:00.000Z") for i in range(50)]
    mock_http.get(LIST_URL, payload={"clubMemberships": first})
    page_2 = LIST_URL.replace("page=1", "page=2")
    mock_http.get(page_2, payload={"clubMemberships": [membership("m-active")]})

    found = await commerce7.list_club_memberships(TENANT, customer_id="cust-1", club_id="club-gold")

    assert len(found) == 51
    assert [m.id for m in found if m.is_active] == ["m-active"]


async def test_create_sends_the_documented_body_and_returns_the_membership(mock_http, commerce7):
    mock_http.post(MEMBERSHIPS, payload=membership("m-new"))

    created = await commerce7.create_club_membership(TENANT, NEW_MEMBERSHIP)

    assert created.id == "m-new" and created.is_active
    (call,) = sent(mock_http, "POST", MEMBERSHIPS)
    assert call.kwargs["headers"]["tenant"] == TENANT
    assert call.kwargs["json"] == {
        "customerId": "cust-1",
        "clubId": "club-gold",
        "signupDate": "2026-03-01T09:30:00.000Z",
        "orderDeliveryMethod": "Pickup",
        "customerCreditCardId": "card-1",
    }


def test_the_create_body_writes_any_zone_as_utc_with_z():
    body = ClubMembershipCreate(
        customerId="c",
        clubId="k",
        signupDate=datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        orderDeliveryMethod="Ship",
    )

    dumped = body.model_dump(mode="json", by_alias=True, exclude_none=True)

    assert dumped["signupDate"] == "2026-03-01T09:30:00.000Z"
    assert dumped["orderDeliveryMethod"] == "Ship"


async def test_cancel_sends_the_date_and_the_reason(mock_http, commerce7):
    url = f"{MEMBERSHIPS}/m-1"
    mock_http.put(url, payload=membership("m-1", cancel_date="2026-03-02T00:00:00.000Z"))

    cancelled = await commerce7.cancel_club_membership(
        TENANT, "m-1", cancel_date=datetime(2026, 3, 2, tzinfo=UTC), reason="Other"
    )

    assert cancelled.cancel_date == datetime(2026, 3, 2, tzinfo=UTC)
    (call,) = sent(mock_http, "PUT", url)
    assert call.kwargs["json"] == {
        "cancelDate": "2026-03-02T00:00:00.000Z",
        "cancellationReason": "Other",
    }
    assert call.kwargs["headers"]["Authorization"] == basic("app-id", "app-secret")


async def test_422_is_permanent_with_commerce7s_message(mock_http, commerce7):
    error = {"statusCode": 422, "type": "validationError", "message": "Credit card required"}
    mock_http.post(MEMBERSHIPS, status=422, payload=error, repeat=True)

    with pytest.raises(ProviderRejectedError) as caught:
        await commerce7.create_club_membership(TENANT, NEW_MEMBERSHIP)

    assert str(caught.value) == "commerce7 HTTP 422 validationError: Credit card required"
    assert caught.value.status == 422
    assert len(sent(mock_http, "POST", MEMBERSHIPS)) == 1
    assert "app-secret" not in str(caught.value)


async def test_a_200_carrying_errors_is_permanent(mock_http, commerce7):
    mock_http.post(MEMBERSHIPS, payload={"errors": [{"message": "clubId is invalid"}]})

    with pytest.raises(ProviderRejectedError, match="clubId is invalid"):
        await commerce7.create_club_membership(TENANT, NEW_MEMBERSHIP)


async def test_a_503_is_transient(session, limiter, mock_http):
    client = Commerce7Client(
        session, base_url=BASE, app_id="a", app_secret="s", limiter=limiter, max_tries=1
    )
    error = {"statusCode": 503, "type": "unavailable", "message": "Try later"}
    mock_http.get(LIST_URL, status=503, payload=error)

    with pytest.raises(ProviderUnavailableError, match="Try later"):
        await client.list_club_memberships(TENANT, customer_id="cust-1", club_id="club-gold")


async def test_from_settings_uses_the_configured_url_and_credentials(session, mock_http):
    settings = ProviderSettings(
        commerce7_base_url="http://sandbox.test/commerce7/v1",
        commerce7_app_id="id-from-settings",
        commerce7_app_secret="secret-from-settings",
    )
    client = Commerce7Client.from_settings(session, settings)
    url = "http://sandbox.test/commerce7/v1/club-membership?customerId=c&limit=50&page=1"
    mock_http.get(url, payload={"clubMemberships": []})

    await client.list_club_memberships(TENANT, customer_id="c")

    (call,) = sent(mock_http, "GET", url)
    assert call.kwargs["headers"]["Authorization"] == basic(
        "id-from-settings", "secret-from-settings"
    )
