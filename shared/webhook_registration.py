"""Register crmsync's webhooks at Shopify and Commerce7, skipping those that exist.

The topics are the ones intake and the syncer handle, read from
:mod:`shared.messages.orders` (``SHOPIFY_ORDER_TOPICS``, ``COMMERCE7_ORDER_ACTIONS`` of
the ``Order`` object), so a topic added there is registered by the next run. A
subscription "exists" when one has the same topic and exactly the same address;
registering twice therefore creates nothing the second time. Subscriptions of the same
topics to other addresses are left alone and reported (``elsewhere``): they may be
another deployment's, or a stale address to delete by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.clients.commerce7_webhooks import Commerce7WebhooksClient
from shared.clients.shopify_webhooks import ShopifyWebhooksClient, topic_enum
from shared.messages.orders import COMMERCE7_ORDER_ACTIONS, SHOPIFY_ORDER_TOPICS

# The Commerce7 object whose web hooks crmsync handles (NOTES.md §3).
COMMERCE7_OBJECT = "Order"

State = Literal["exists", "missing", "created"]


def shopify_topics() -> list[str]:
    """The Shopify topics crmsync handles, as enum values: ``["ORDERS_CANCELLED", ...]``."""
    return sorted(topic_enum(t) for t in SHOPIFY_ORDER_TOPICS)


def commerce7_events() -> list[tuple[str, str]]:
    """``[("Order", "Create"), ("Order", "Update"), ...]``."""
    return [(COMMERCE7_OBJECT, action) for action in sorted(COMMERCE7_ORDER_ACTIONS)]


@dataclass
class Registration:
    """One topic at one address: ``exists``, ``missing`` (a dry run), ``created``;
    ``elsewhere`` lists the other addresses the topic is already delivered to."""

    topic: str
    address: str
    state: State
    id: str | None = None
    elsewhere: list[str] = field(default_factory=list)


async def register_shopify(
    client: ShopifyWebhooksClient, address: str, *, dry_run: bool = False
) -> list[Registration]:
    """Subscribe ``address`` to every topic of :func:`shopify_topics` it lacks.

    Raises:
        ProviderRejectedError, ProviderUnavailableError: as the client's calls; the
            subscriptions created before the failure stay (a rerun skips them).
    """
    topics = shopify_topics()
    existing = await client.list_subscriptions(topics)
    result = []
    for topic in topics:
        same = [s for s in existing if s.topic == topic]
        match = next((s for s in same if s.uri == address), None)
        item = Registration(topic, address, "exists" if match else "missing")
        item.id = match.id if match else None
        item.elsewhere = sorted({s.uri for s in same if s.uri != address})
        if match is None and not dry_run:
            created = await client.create_subscription(topic, address)
            item.state, item.id = "created", created.id
        result.append(item)
    return result


async def register_commerce7(
    client: Commerce7WebhooksClient, tenant: str, address: str, *, dry_run: bool = False
) -> list[Registration]:
    """Add a web hook to ``address`` for every event of :func:`commerce7_events` the
    tenant lacks; the topic reads ``Order Create``.

    Raises:
        ProviderRejectedError, ProviderUnavailableError: as the client's calls.
    """
    existing = await client.list_webhooks(tenant)
    result = []
    for obj, action in commerce7_events():
        same = [w for w in existing if (w.object, w.action) == (obj, action)]
        match = next((w for w in same if w.url == address), None)
        item = Registration(f"{obj} {action}", address, "exists" if match else "missing")
        item.id = match.id if match else None
        item.elsewhere = sorted({w.url for w in same if w.url != address})
        if match is None and not dry_run:
            created = await client.create_webhook(tenant, object_=obj, action=action, url=address)
            item.state, item.id = "created", created.id
        result.append(item)
    return result
