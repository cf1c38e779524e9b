"""Bad input never gets a 5xx from intake: a 4xx problem naming the field, or handled.

Each refused request publishes nothing, so nothing the syncer cannot store (NUL in
text, integers beyond their column, times outside 1970-2099) reaches it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import intake_settings
from tests.helpers import (
    commerce7_webhook,
    get_messages,
    post_commerce7,
    post_shopify,
    queue_depth,
    shopify_headers,
    shopify_order,
)

KEY = "bad-input-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    return await make_intake(intake_settings(namespace, api_keys={"app": KEY}))


def credits(**changes: Any) -> dict[str, Any]:
    body = {
        "idempotencyKey": f"k-{uuid.uuid4().hex}",
        "reason": "booking_created",
        "occurredAt": "2026-11-21T10:00:00Z",
        "contact": {"studentId": "st-17"},
        "credits": {"sj_credits": 3},
        "version": 1,
    }
    body.update(changes)
    return body


def login(**changes: Any) -> dict[str, Any]:
    body = {"profileId": "p-17", "occurredAt": "2026-11-21T10:00:00Z"}
    body.update(changes)
    return body


def booking(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotencyKey": f"b-{uuid.uuid4().hex}",
        "action": "created",
        "occurredAt": "2026-11-21T10:00:00Z",
        "booking": {"bookingRef": "bk-1", "examRef": "mx-1", "contact": {"studentId": "st-17"}},
    }
    body.update(changes)
    return body


async def post(http, url: str, path: str, body: Any) -> tuple[int, Any, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    async with http.post(f"{url}{path}", data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.content_type


async def assert_refused(http, url: str, path: str, body: Any, pointer: str) -> None:
    status, problem, ctype = await post(http, url, path, body)
    assert (status, ctype) == (422, PROBLEM), (body, problem)
    assert pointer in {e["pointer"] for e in problem["errors"]}, problem


EVENT_TIMES = [
    "1969-12-31T23:59:59Z",  # before the Unix epoch: no AMQP timestamp
    "1900-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",  # after year 9999 in UTC
    "2100-01-01T00:00:00Z",
    "2026-11-21T10:00:00",  # no offset: ambiguous
    "2026-11-21",
    "1700000000",
    1700000000,  # a number, not a date-time string
]


@pytest.mark.parametrize("when", EVENT_TIMES)
async def test_event_times_outside_1970_to_2099_are_a_422(
    http, app_intake, namespace, when
) -> None:
    await assert_refused(
        http, app_intake, "/v1/events/credits", credits(occurredAt=when), "/occurredAt"
    )
    await assert_refused(
        http, app_intake, "/v1/events/login", login(occurredAt=when), "/occurredAt"
    )
    await assert_refused(
        http, app_intake, "/v1/events/bookings", booking(occurredAt=when), "/occurredAt"
    )
    assert await queue_depth(f"{namespace}syncer.credits") == 0


async def test_a_1970_time_with_an_offset_before_the_epoch_in_utc_is_handled(
    http, app_intake, namespace
) -> None:
    body = credits(occurredAt="1970-01-01T00:30:00+01:00")
    status, accepted, _ = await post(http, app_intake, "/v1/events/credits", body)
    assert status == 202, accepted
    [message] = await get_messages(f"{namespace}syncer.credits")
    assert json.loads(message.body)["occurredAt"] == "1970-01-01T00:30:00+01:00"  # as sent
    assert message.timestamp is not None and message.timestamp.timestamp() == 0  # clamped


async def test_nul_and_control_characters_in_bodies_are_a_422(http, app_intake, namespace) -> None:
    cases = [
        ("/v1/events/credits", credits(idempotencyKey="a\u0000b"), "/idempotencyKey"),
        ("/v1/events/credits", credits(contact={"studentId": "st\u000017"}), "/contact/studentId"),
        ("/v1/events/credits", credits(contact={"hubspotId": "1\n2"}), "/contact/hubspotId"),
        ("/v1/events/credits", credits(contact={"email": "a\u0000@b"}), "/contact/email"),
        (
            "/v1/events/credits",
            credits(contact={"studentId": "s", "firstName": "Ada\u0000"}),
            "/contact/firstName",
        ),
        ("/v1/events/login", login(profileId="p\u0000"), "/profileId"),
        ("/v1/events/login", login(email="a@b\u0000"), "/email"),
        (
            "/v1/events/bookings",
            booking(
                booking={"bookingRef": "bk\u0000", "examRef": "m", "contact": {"studentId": "s"}}
            ),
            "/booking/bookingRef",
        ),
        (
            "/v1/events/bookings",
            booking(
                booking={
                    "bookingRef": "bk",
                    "examRef": "m",
                    "examName": "\u0000",
                    "contact": {"studentId": "s"},
                }
            ),
            "/booking/examName",
        ),
    ]
    for path, body, pointer in cases:
        await assert_refused(http, app_intake, path, body, pointer)
    assert await queue_depth(f"{namespace}syncer.credits") == 0
    assert await queue_depth(f"{namespace}syncer.logins") == 0


async def test_integers_beyond_their_column_and_wrong_types_are_a_422(http, app_intake) -> None:
    cases = [
        (credits(version=2**70), "/version"),
        (credits(version=2**63), "/version"),
        (credits(version=-1), "/version"),
        (credits(version="1"), "/version"),
        (credits(version=True), "/version"),
        (credits(version=1.5), "/version"),
        (credits(credits={"sj_credits": 2**31}), "/credits/sj_credits"),
        (credits(credits={"sj_credits": 2**70}), "/credits/sj_credits"),
        (credits(credits={"sj_credits": -1}), "/credits/sj_credits"),
        (credits(credits={"gold_stars": 1}), "/credits/gold_stars"),
    ]
    for body, pointer in cases:
        await assert_refused(http, app_intake, "/v1/events/credits", body, pointer)
    huge = json.dumps(credits()).replace('"version": 1', '"version": 1e400').encode()
    await assert_refused(http, app_intake, "/v1/events/credits", huge, "/version")
    await assert_refused(
        http, app_intake, "/v1/events/bookings", booking(version=2**70), "/version"
    )


async def test_integral_numbers_and_the_largest_bigint_are_accepted(http, app_intake) -> None:
    for body in (
        credits(version=2.0),
        credits(version=2**63 - 1),
        credits(credits={"sj_credits": 2**31 - 1}),
    ):
        status, accepted, _ = await post(http, app_intake, "/v1/events/credits", body)
        assert status == 202, (body, accepted)


async def test_nul_and_overlong_path_parameters_are_a_422(http, app_intake, namespace) -> None:
    for profile in ("a%00b", "%00", "x" * 201, "a%0Ab"):
        async with http.post(
            f"{app_intake}/v1/profiles/{profile}/packages/sync", headers=AUTH
        ) as resp:
            assert (resp.status, resp.content_type) == (422, PROBLEM), profile
            problem = await resp.json(content_type=None)
            assert problem["errors"][0]["parameter"] == "profileId"
    async with http.get(
        f"{app_intake}/v1/profiles/a%00b/packages/sync/{uuid.uuid4()}", headers=AUTH
    ) as resp:
        assert resp.status == 422
    assert await queue_depth(f"{namespace}syncer.packages.refreshes") == 0


async def test_a_request_id_that_is_not_a_uuid_is_a_404(http, app_intake) -> None:
    for request_id in ("nope", "%00", "1" * 40):
        async with http.get(
            f"{app_intake}/v1/profiles/p-1/packages/sync/{request_id}", headers=AUTH
        ) as resp:
            assert (resp.status, resp.content_type) == (404, PROBLEM), request_id


async def test_a_long_profile_id_without_a_key_still_gets_a_valid_event_id(
    http, app_intake, namespace
) -> None:
    status, accepted, _ = await post(
        http, app_intake, "/v1/events/login", login(profileId="p" * 200)
    )
    assert status == 202, accepted
    assert len(accepted["id"].encode()) <= 255
    status, again, _ = await post(http, app_intake, "/v1/events/login", login(profileId="p" * 200))
    assert again["id"] == accepted["id"]  # the same login is the same event


async def test_shopify_orders_with_ids_or_amounts_beyond_bigint_are_a_422(
    http, intake, namespace
) -> None:
    cases = [
        (shopify_order(id=2**70), "/id"),
        (shopify_order(id="450789469"), "/id"),
        (shopify_order(total_price="1e999"), "/total_price"),
        (shopify_order(total_price=598.94), "/total_price"),
        (shopify_order(current_subtotal_price="9" * 20), "/current_subtotal_price"),
        (shopify_order(currency="US\u0000"), "/currency"),
        (shopify_order(email="a\u0000@b"), "/email"),
        (shopify_order(updated_at="1900-01-01T00:00:00Z"), "/updated_at"),
    ]
    for body, pointer in cases:
        status, problem, ctype = await post_shopify(http, intake, body=body)
        assert (status, ctype) == (422, PROBLEM), (pointer, problem)
        assert pointer in {e["pointer"] for e in problem["errors"]}
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_a_shopify_body_that_is_not_an_object_is_a_400_whatever_the_topic(
    http, intake
) -> None:
    for topic in ("orders/paid", "customers/create", "made/up"):
        status, problem, _ = await post_shopify(http, intake, body=b"[1, 2]", topic=topic)
        assert status == 400, (topic, problem)


async def test_an_absurd_shopify_trigger_time_is_handled(http, intake, namespace) -> None:
    body = shopify_order()
    for triggered_at in ("1900-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "yesterday"):
        headers = {**shopify_headers(body), "X-Shopify-Triggered-At": triggered_at}
        async with http.post(f"{intake}/webhooks/shopify", data=body, headers=headers) as resp:
            assert resp.status == 200, triggered_at
    messages = await get_messages(f"{namespace}syncer.orders")
    assert len(messages) == 3
    assert all(m.timestamp is not None and m.timestamp.year >= 2026 for m in messages)


async def test_commerce7_amounts_beyond_bigint_and_nul_ids_are_a_422(
    http, intake, namespace
) -> None:
    cases = [
        (commerce7_webhook(subTotal=2**70), "/payload/subTotal"),
        (commerce7_webhook(total="8510"), "/payload/total"),
        (commerce7_webhook(customerId="c\u00001"), "/payload/customerId"),
        (commerce7_webhook(updatedAt="0001-01-01T00:00:00+05:00"), "/payload/updatedAt"),
    ]
    for body, pointer in cases:
        status, problem, _ = await post_commerce7(http, intake, body)
        assert status == 422, (pointer, problem)
        assert pointer in {e["pointer"] for e in problem["errors"]}
    assert await queue_depth(f"{namespace}syncer.orders") == 0
