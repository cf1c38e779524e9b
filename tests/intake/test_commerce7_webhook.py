"""POST /webhooks/commerce7: Basic auth required (with rotation), tenant allow-list, validation."""

from __future__ import annotations

import json

from shared.events import CloudEvent
from tests.conftest import intake_settings
from tests.helpers import (
    COMMERCE7_WEBHOOK,
    basic_auth,
    commerce7_webhook,
    get_messages,
    post_commerce7,
    queue_depth,
)


async def test_commerce7_order_is_published_with_a_stable_id(http, intake, namespace) -> None:
    status, first, _ = await post_commerce7(http, intake)
    assert status == 200, first
    status, second, _ = await post_commerce7(http, intake)
    assert first["id"] == second["id"]  # the same change delivered twice: one id
    messages = await get_messages(f"{namespace}syncer.orders")
    assert len(messages) == 2
    event = CloudEvent.from_amqp(messages[0].headers, messages[0].body, messages[0].content_type)
    assert event.type == "commerce7.order.create"
    assert event.source == "urn:commerce7:testing"
    assert event.data == COMMERCE7_WEBHOOK
    status, third, _ = await post_commerce7(
        http, intake, commerce7_webhook(updatedAt="2024-08-02T00:00:00.000Z")
    )
    assert third["id"] != first["id"]  # a later change is a new event


async def test_basic_auth_is_checked(http, make_intake, namespace) -> None:
    url = await make_intake(
        intake_settings(namespace, commerce7_webhook_username="c7", commerce7_webhook_password="pw")
    )
    status, problem, ctype = await post_commerce7(http, url, Authorization="")
    assert status == 401 and ctype == "application/problem+json"
    assert problem["status"] == 401
    status, _, _ = await post_commerce7(http, url, Authorization=basic_auth("c7", "wrong"))
    assert status == 401
    status, _, _ = await post_commerce7(http, url, Authorization=basic_auth("other", "pw"))
    assert status == 401
    assert await queue_depth(f"{namespace}syncer.orders") == 0
    status, _, _ = await post_commerce7(http, url, Authorization=basic_auth("c7", "pw"))
    assert status == 200


async def test_without_credentials_configured_every_webhook_is_refused(
    http, make_intake, namespace
) -> None:
    url = await make_intake(
        intake_settings(namespace, commerce7_webhook_username="", commerce7_webhook_password="")
    )
    for authorization in ("", basic_auth("anyone", "anything")):
        status, problem, ctype = await post_commerce7(http, url, Authorization=authorization)
        assert status == 401 and ctype == "application/problem+json"
        assert "CRMSYNC_COMMERCE7_WEBHOOK_USERNAME" in problem["detail"]
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_a_username_without_a_password_is_not_credentials(
    http, make_intake, namespace
) -> None:
    url = await make_intake(
        intake_settings(namespace, commerce7_webhook_username="c7", commerce7_webhook_password="")
    )
    status, _, _ = await post_commerce7(http, url, Authorization=basic_auth("c7", ""))
    assert status == 401


async def test_unauthenticated_webhooks_are_taken_only_when_explicitly_allowed(
    http, make_intake, namespace
) -> None:
    url = await make_intake(
        intake_settings(
            namespace,
            commerce7_webhook_username="",
            commerce7_webhook_password="",
            commerce7_allow_unauthenticated=True,
        )
    )
    status, body, _ = await post_commerce7(http, url, Authorization="")
    assert status == 200 and body["status"] == "accepted"
    assert await queue_depth(f"{namespace}syncer.orders") == 1


async def test_the_allow_flag_does_not_waive_configured_credentials(
    http, make_intake, namespace
) -> None:
    url = await make_intake(intake_settings(namespace, commerce7_allow_unauthenticated=True))
    status, _, _ = await post_commerce7(http, url, Authorization="")
    assert status == 401
    status, _, _ = await post_commerce7(http, url, Authorization=basic_auth("c7-test", "nope"))
    assert status == 401


async def test_the_previous_password_is_accepted_during_a_rotation(
    http, make_intake, namespace
) -> None:
    url = await make_intake(
        intake_settings(
            namespace,
            commerce7_webhook_username="c7",
            commerce7_webhook_password="new-pw",
            commerce7_webhook_password_previous="old-pw",
        )
    )
    for password in ("new-pw", "old-pw"):
        status, body, _ = await post_commerce7(http, url, Authorization=basic_auth("c7", password))
        assert status == 200, (password, body)
    status, _, _ = await post_commerce7(http, url, Authorization=basic_auth("c7", "older-pw"))
    assert status == 401
    assert await queue_depth(f"{namespace}syncer.orders") == 2


async def test_an_unknown_tenant_is_forbidden(http, intake, namespace) -> None:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    webhook["tenantId"] = "someone-else"
    status, problem, ctype = await post_commerce7(http, intake, json.dumps(webhook).encode())
    assert status == 403 and ctype == "application/problem+json"
    assert "someone-else" in problem["detail"]
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_missing_payload_fields_are_a_422_with_pointers(http, intake, namespace) -> None:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    del webhook["payload"]["customerId"]
    del webhook["payload"]["subTotal"]
    status, problem, _ = await post_commerce7(http, intake, json.dumps(webhook).encode())
    assert status == 422
    assert {e["pointer"] for e in problem["errors"]} == {"/payload/customerId", "/payload/subTotal"}
    assert await queue_depth(f"{namespace}syncer.orders") == 0


async def test_missing_tenant_is_a_422(http, intake) -> None:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    del webhook["tenantId"]
    status, problem, _ = await post_commerce7(http, intake, json.dumps(webhook).encode())
    assert status == 422 and problem["errors"][0]["pointer"] == "/tenantId"


async def test_malformed_json_is_a_400(http, intake) -> None:
    status, _, ctype = await post_commerce7(http, intake, b"not json")
    assert status == 400 and ctype == "application/problem+json"


async def test_other_objects_are_acknowledged_and_ignored(http, intake, namespace) -> None:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    webhook["object"] = "Customer"
    status, body, _ = await post_commerce7(http, intake, json.dumps(webhook).encode())
    assert status == 200 and body["status"] == "ignored"
    assert await queue_depth(f"{namespace}syncer.orders") == 0
