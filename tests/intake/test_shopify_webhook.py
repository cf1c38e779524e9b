"""POST /webhooks/shopify against real RabbitMQ: signed orders in, bad ones out."""

from __future__ import annotations

import json

from services.intake.auth import shopify_hmac, verify_shopify_hmac
from shared.events import CloudEvent
from tests.conftest import FIXTURES, intake_settings
from tests.helpers import (
    SHOPIFY_ORDER,
    get_messages,
    post_shopify,
    queue_depth,
    shopify_headers,
    shopify_order,
)


def test_the_official_hmac_test_vector_verifies() -> None:
    vector = json.loads((FIXTURES / "shopify_hmac_test_vector.json").read_text())
    body = vector["raw_body"].encode()
    assert shopify_hmac(body, vector["client_secret"]) == vector["expected_header_value"]
    assert verify_shopify_hmac(body, vector["expected_header_value"], vector["client_secret"])
    assert not verify_shopify_hmac(
        body + b" ", vector["expected_header_value"], vector["client_secret"]
    )
    assert not verify_shopify_hmac(body, vector["expected_header_value"], "")


async def test_a_signed_order_is_published_with_its_exact_bytes(http, intake, namespace) -> None:
    status, body, _ = await post_shopify(http, intake, webhook_id="wh-123")
    assert status == 200, body
    assert body == {"status": "accepted", "id": "wh-123"}
    [message] = await get_messages(f"{namespace}syncer.orders")
    assert message.body == SHOPIFY_ORDER  # never re-encoded
    assert message.message_id == "wh-123"
    assert message.type == "shopify.orders.paid"
    assert message.delivery_mode == 2  # persistent
    event = CloudEvent.from_amqp(message.headers, message.body, message.content_type)
    assert event.id == "wh-123"
    assert event.type == "shopify.orders.paid"
    assert event.subject == "450789469"
    assert event.source == "https://crmsync-test.myshopify.com"
    assert message.headers["cloudEvents:specversion"] == "1.0"


async def test_a_bad_signature_is_refused_and_nothing_published(http, intake, namespace) -> None:
    headers = shopify_headers(SHOPIFY_ORDER, secret="not-the-secret")
    async with http.post(f"{intake}/webhooks/shopify", data=SHOPIFY_ORDER, headers=headers) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
    assert problem["status"] == 401 and "Hmac" in problem["detail"]
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_a_missing_signature_is_refused(http, intake, namespace) -> None:
    headers = shopify_headers(SHOPIFY_ORDER)
    del headers["X-Shopify-Hmac-Sha256"]
    async with http.post(f"{intake}/webhooks/shopify", data=SHOPIFY_ORDER, headers=headers) as resp:
        assert resp.status == 401


async def test_malformed_json_is_a_400_problem(http, intake, namespace) -> None:
    status, problem, ctype = await post_shopify(http, intake, body=b'{"id": 1,')
    assert status == 400 and ctype == "application/problem+json"
    assert "malformed JSON" in problem["detail"]
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_missing_fields_are_a_422_naming_each_field(http, intake, namespace) -> None:
    order = json.loads(SHOPIFY_ORDER)
    del order["currency"]
    order["customer"].pop("id")
    status, problem, ctype = await post_shopify(http, intake, body=json.dumps(order).encode())
    assert status == 422 and ctype == "application/problem+json"
    pointers = {e["pointer"] for e in problem["errors"]}
    assert pointers == {"/currency", "/customer/id"}
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_an_oversized_body_is_a_413(http, make_intake, namespace) -> None:
    from tests.conftest import intake_settings

    url = await make_intake(intake_settings(namespace, max_body_bytes=10_000))
    status, _, ctype = await post_shopify(http, url)  # the order is ~28 KB
    assert status == 413 and ctype == "application/problem+json"
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_a_topic_we_do_not_handle_gets_200_and_is_not_published(
    http, intake, namespace
) -> None:
    status, body, _ = await post_shopify(http, intake, topic="products/create")
    assert status == 200 and body["status"] == "ignored"
    assert await queue_depth(f"{namespace}syncer.orders") == 0
    async with http.get(f"{intake}/metrics") as resp:
        metrics = await resp.text()
    assert 'crmsync_webhooks_ignored_total{provider="shopify",topic="products/create"}' in metrics


async def test_missing_topic_header_is_a_400(http, intake) -> None:
    headers = shopify_headers(SHOPIFY_ORDER)
    del headers["X-Shopify-Topic"]
    async with http.post(f"{intake}/webhooks/shopify", data=SHOPIFY_ORDER, headers=headers) as resp:
        assert resp.status == 400
        assert "X-Shopify-Topic" in (await resp.json(content_type=None))["detail"]


async def test_a_guest_order_without_customer_is_accepted(http, intake, namespace) -> None:
    status, _, _ = await post_shopify(http, intake, body=shopify_order(customer=None))
    assert status == 200
    assert await queue_depth(f"{namespace}syncer.orders") == 1


def test_verification_accepts_any_of_the_given_secrets() -> None:
    body = b'{"id": 1}'
    header = shopify_hmac(body, "old")
    assert verify_shopify_hmac(body, header, "new", "old")
    assert verify_shopify_hmac(body, shopify_hmac(body, "new"), "new", "old")
    assert not verify_shopify_hmac(body, header, "new", "")
    assert not verify_shopify_hmac(body, header, "", "")


async def test_the_previous_secret_is_accepted_during_a_rotation(
    http, make_intake, namespace
) -> None:
    url = await make_intake(
        intake_settings(
            namespace, shopify_webhook_secret="new-secret", shopify_webhook_secret_previous="old"
        )
    )
    for secret in ("new-secret", "old"):
        status, body, _ = await post_shopify(http, url, secret=secret)
        assert status == 200, (secret, body)
    status, problem, _ = await post_shopify(http, url, secret="neither")
    assert status == 401 and problem["status"] == 401
    assert await queue_depth(f"{namespace}syncer.orders") == 2


async def test_after_the_rotation_the_old_secret_is_refused(http, make_intake, namespace) -> None:
    url = await make_intake(intake_settings(namespace, shopify_webhook_secret="new-secret"))
    status, _, _ = await post_shopify(http, url, secret="old")
    assert status == 401
    status, _, _ = await post_shopify(http, url, secret="new-secret")
    assert status == 200
