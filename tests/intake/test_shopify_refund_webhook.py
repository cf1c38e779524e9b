"""POST /webhooks/shopify with topic refunds/create: a Refund resource, not an order."""

from __future__ import annotations

import json

from shared.events import CloudEvent
from tests.conftest import FIXTURES
from tests.helpers import get_messages, post_shopify, queue_depth

# The Refund resource of Shopify's REST reference (order_get_450789469.response.json);
# a refunds/create webhook body is this object, bare (WEBHOOKS.md §1).
REFUND = json.dumps(
    json.loads((FIXTURES / "shopify_order_get_450789469.response.json").read_text())["order"][
        "refunds"
    ][0]
).encode()


async def test_a_refund_is_published_with_the_order_as_its_subject(http, intake, namespace) -> None:
    status, body, _ = await post_shopify(
        http, intake, body=REFUND, topic="refunds/create", webhook_id="wh-refund-1"
    )
    assert status == 200, body
    [message] = await get_messages(f"{namespace}syncer.orders")
    assert message.body == REFUND
    event = CloudEvent.from_amqp(message.headers, message.body, message.content_type)
    assert event.type == "shopify.refunds.create"
    assert event.subject == "450789469"  # the refunded order, which the syncer re-reads


async def test_a_refund_without_its_order_id_is_a_422_naming_it(http, intake, namespace) -> None:
    refund = json.loads(REFUND)
    del refund["order_id"]
    status, problem, ctype = await post_shopify(
        http, intake, body=json.dumps(refund).encode(), topic="refunds/create"
    )
    assert status == 422 and ctype == "application/problem+json"
    assert {e["pointer"] for e in problem["errors"]} == {"/order_id"}
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_a_cancelled_order_is_validated_as_an_order(http, intake, namespace) -> None:
    status, _, _ = await post_shopify(
        http, intake, body=b'{"id": 1, "cancelled_at": "2026-01-01T00:00:00Z"}',
        topic="orders/cancelled",
    )  # fmt: skip
    assert status == 422
