"""Webhook registration at the Shopify and Commerce7 sandboxes: once, never twice."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from shared import webhook_registration
from shared.clients.commerce7_webhooks import Commerce7WebhooksClient
from shared.clients.shopify_webhooks import ShopifyWebhooksClient, topic_enum
from shared.errors import ProviderRejectedError
from shared.messages.orders import COMMERCE7_ORDER_ACTIONS, SHOPIFY_ORDER_TOPICS
from shared.settings import ProviderSettings
from shared.webhook_registration import register_commerce7, register_shopify
from tests.golive.conftest import control, run_cli, sandbox_env

SHOPIFY_ADDRESS = "https://crmsync.example.test/webhooks/shopify"
C7_ADDRESS = "https://crmsync.example.test/webhooks/commerce7"


def settings(sandbox: str) -> ProviderSettings:
    return ProviderSettings(
        _env_file=None,
        shopify_base_url=f"{sandbox}/shopify",
        commerce7_base_url=f"{sandbox}/commerce7/v1",
    )


async def subscriptions(http, sandbox: str) -> list[dict]:
    return (await control(http, "GET", f"{sandbox}/_sandbox/shopify/webhook-subscriptions"))[
        "webhookSubscriptions"
    ]


async def web_hooks(http, sandbox: str, tenant: str) -> list[dict]:
    return (await control(http, "GET", f"{sandbox}/_sandbox/commerce7/{tenant}/web-hooks"))[
        "webHooks"
    ]


def test_topics_come_from_the_order_topics_crmsync_handles() -> None:
    assert webhook_registration.shopify_topics() == sorted(
        t.upper().replace("/", "_") for t in SHOPIFY_ORDER_TOPICS
    )
    assert webhook_registration.commerce7_events() == [
        ("Order", a) for a in sorted(COMMERCE7_ORDER_ACTIONS)
    ]
    assert topic_enum("refunds/create") == "REFUNDS_CREATE"


async def test_shopify_registration_twice_creates_each_subscription_once(http, sandbox) -> None:
    env = sandbox_env(sandbox)
    args = ("shopify", "webhooks", "register", "--address", SHOPIFY_ADDRESS)
    status, out, err = await run_cli(*args, "--dry-run", env=env)
    assert status == 0, (out, err)
    assert out.count("would create") == len(SHOPIFY_ORDER_TOPICS)
    assert await subscriptions(http, sandbox) == []

    status, out, err = await run_cli(*args, env=env)
    assert status == 0, (out, err)
    assert out.count(" created") == len(SHOPIFY_ORDER_TOPICS)
    status, out, err = await run_cli(*args, "--json", env=env)
    assert status == 0, (out, err)
    assert {i["state"] for i in json.loads(out)} == {"exists"}

    found = await subscriptions(http, sandbox)
    assert sorted(s["topic"] for s in found) == webhook_registration.shopify_topics()
    assert {s["uri"] for s in found} == {SHOPIFY_ADDRESS}
    assert {s["format"] for s in found} == {"JSON"}
    status, out, _ = await run_cli("shopify", "webhooks", "list", env=env)
    assert status == 0
    assert len(out.splitlines()) == len(SHOPIFY_ORDER_TOPICS)


async def test_a_topic_added_to_the_constant_is_registered_by_the_next_run(
    http, sandbox, monkeypatch
) -> None:
    client = ShopifyWebhooksClient.from_settings(http, settings(sandbox))
    await register_shopify(client, SHOPIFY_ADDRESS)
    # A topic crmsync does not handle (yet), as if a handler for it had been added.
    assert "orders/fulfilled" not in SHOPIFY_ORDER_TOPICS
    monkeypatch.setattr(
        webhook_registration, "SHOPIFY_ORDER_TOPICS", SHOPIFY_ORDER_TOPICS | {"orders/fulfilled"}
    )
    again = await register_shopify(client, SHOPIFY_ADDRESS)
    assert [i.topic for i in again if i.state == "created"] == ["ORDERS_FULFILLED"]
    assert len(await subscriptions(http, sandbox)) == len(SHOPIFY_ORDER_TOPICS) + 1


async def test_a_subscription_to_another_address_is_kept_and_reported(http, sandbox) -> None:
    client = ShopifyWebhooksClient.from_settings(http, settings(sandbox))
    old = "https://old.example.test/webhooks/shopify"
    await client.create_subscription("ORDERS_PAID", old)
    result = {i.topic: i for i in await register_shopify(client, SHOPIFY_ADDRESS)}
    assert result["ORDERS_PAID"].state == "created"
    assert result["ORDERS_PAID"].elsewhere == [old]
    assert len(await subscriptions(http, sandbox)) == len(SHOPIFY_ORDER_TOPICS) + 1


async def test_the_shopify_sandbox_refuses_a_duplicate_as_shopify_does(http, sandbox) -> None:
    client = ShopifyWebhooksClient.from_settings(http, settings(sandbox))
    await client.create_subscription("ORDERS_PAID", SHOPIFY_ADDRESS)
    with pytest.raises(ProviderRejectedError, match="already been taken"):
        await client.create_subscription("ORDERS_PAID", SHOPIFY_ADDRESS)
    with pytest.raises(ProviderRejectedError, match="invalid value"):
        await client.create_subscription("ORDERS_EXPLODED", SHOPIFY_ADDRESS)


async def test_shopify_with_a_wrong_token_is_refused(http, sandbox) -> None:
    config = settings(sandbox).model_copy(update={"shopify_access_token": SecretStr("wrong")})
    client = ShopifyWebhooksClient.from_settings(http, config)
    with pytest.raises(ProviderRejectedError) as caught:
        await client.shop()
    assert caught.value.status == 401


async def test_commerce7_registration_twice_adds_each_web_hook_once(http, sandbox) -> None:
    env = sandbox_env(sandbox, CRMSYNC_COMMERCE7_TENANTS="testing,other")
    args = ("commerce7", "webhooks", "register", "--address", C7_ADDRESS)
    status, out, err = await run_cli(*args, "--dry-run", env=env)
    assert status == 0, (out, err)
    assert await web_hooks(http, sandbox, "testing") == []
    for _ in range(2):
        status, out, err = await run_cli(*args, env=env)
        assert status == 0, (out, err)
    assert "exists" in out and "created" not in out
    for tenant in ("testing", "other"):
        hooks = await web_hooks(http, sandbox, tenant)
        assert sorted((h["object"], h["action"]) for h in hooks) == [
            ("Order", "Create"), ("Order", "Update"),
        ]  # fmt: skip
        assert {h["url"] for h in hooks} == {C7_ADDRESS}
    status, out, _ = await run_cli("commerce7", "webhooks", "list", "--tenant", "other", env=env)
    assert status == 0
    assert len(out.splitlines()) == 2


async def test_commerce7_registration_keeps_hooks_of_other_objects(http, sandbox) -> None:
    client = Commerce7WebhooksClient.from_settings(http, settings(sandbox))
    await client.create_webhook("testing", object_="Customer", action="Create", url=C7_ADDRESS)
    result = await register_commerce7(client, "testing", C7_ADDRESS)
    assert [i.state for i in result] == ["created", "created"]
    assert len(await web_hooks(http, sandbox, "testing")) == 3


async def test_commerce7_with_wrong_credentials_is_refused(http, sandbox) -> None:
    config = settings(sandbox).model_copy(update={"commerce7_app_secret": SecretStr("wrong")})
    client = Commerce7WebhooksClient.from_settings(http, config)
    with pytest.raises(ProviderRejectedError) as caught:
        await client.list_webhooks("testing")
    assert caught.value.status == 401


async def test_listing_follows_the_cursor_through_every_page(http, sandbox, monkeypatch) -> None:
    from shared.clients import shopify_webhooks

    monkeypatch.setattr(shopify_webhooks, "PAGE_SIZE", 2)
    client = ShopifyWebhooksClient.from_settings(http, settings(sandbox))
    for i in range(5):
        await client.create_subscription("ORDERS_PAID", f"https://h{i}.example.test/w")
    await client.create_subscription("CUSTOMERS_CREATE", SHOPIFY_ADDRESS)
    found = await client.list_subscriptions(["ORDERS_PAID"])
    assert sorted(s.uri for s in found) == [f"https://h{i}.example.test/w" for i in range(5)]
    assert len(await client.list_subscriptions()) == 6
    shop = await client.shop()
    assert shop.myshopify_domain == "crmsync-dev.myshopify.com"
