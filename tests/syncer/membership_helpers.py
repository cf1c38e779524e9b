"""Helpers for the provider-convergence tests: deps to call handlers directly, provider
state read from the sandbox's control routes, and Postgres's view to compare with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg

from services.syncer.deps import SyncerDeps
from services.syncer.main import consumer_plan
from shared.broker import Broker
from shared.clients.commerce7 import Commerce7Client
from shared.clients.hubspot import HubSpotClient
from shared.clients.repcard import RepCardClient
from shared.clients.shopify import ShopifyClient
from shared.consumer import Delivery
from shared.db import create_pool
from shared.events import CloudEvent
from shared.messages.memberships import MembershipActionRequested, membership_action_type
from shared.queues import MEMBERSHIP_ACTIONS
from shared.topology import Topology
from tests.conftest import AMQP_URL

TENANT = "testing"


@asynccontextmanager
async def direct_deps(settings: Any, http: aiohttp.ClientSession) -> AsyncIterator[SyncerDeps]:
    """What the syncer passes its handlers, without consumers: the test calls them."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=5)
    broker = Broker(
        AMQP_URL,
        Topology(settings.amqp_namespace),
        [spec for spec, _, _ in consumer_plan(settings)],
        name="tests-direct-deps",
    )
    try:
        await broker.wait_ready()
        yield SyncerDeps(
            settings=settings,
            pool=pool,
            shopify=ShopifyClient.from_settings(http, settings, max_tries=1),
            commerce7=Commerce7Client.from_settings(http, settings, max_tries=1),
            hubspot=HubSpotClient.from_settings(http, settings),
            crm=None,  # type: ignore[arg-type]  # membership handlers never read the CRM
            broker=broker,
            repcard=RepCardClient.from_settings(http, settings),
        )
    finally:
        await broker.close()
        await pool.close()


def action_event(action_id: int, provider: str, kind: str) -> CloudEvent:
    """The outbox event of an action, as the relay publishes it."""
    return CloudEvent.create(
        id=f"provider-action-{action_id}",
        type=membership_action_type(provider),
        source="urn:test",
        subject=str(action_id),
        data=MembershipActionRequested(action_id=action_id, provider=provider, kind=kind),
    )


def delivery(settings: Any, provider: str, namespace: str, attempt: int = 1) -> Delivery:
    plan = {spec.name: spec for spec, _, _ in consumer_plan(settings)}
    spec = plan[MEMBERSHIP_ACTIONS[provider].name]
    return Delivery(
        queue=f"{namespace}{spec.name}",
        attempt=attempt,
        max_attempts=settings.action_max_attempts,
        redelivered=False,
        retry_delays_s=spec.retry_delays_s,
    )


async def shopify_tags(http: aiohttp.ClientSession, sandbox: str, customer_id: str) -> list[str]:
    async with http.get(f"{sandbox}/_sandbox/shopify/customers/{customer_id}") as resp:
        if resp.status != 200:
            return []
        tags: list[str] = (await resp.json())["tags"]
        return tags


async def all_shopify_tags(http: aiohttp.ClientSession, sandbox: str) -> dict[str, list[str]]:
    async with http.get(f"{sandbox}/_sandbox/shopify/customers") as resp:
        return {str(c["id"]): c["tags"] for c in (await resp.json())["customers"]}


async def memberships(
    http: aiohttp.ClientSession, sandbox: str, customer_id: str | None = None
) -> list[dict[str, Any]]:
    params = {"customerId": customer_id} if customer_id else {}
    async with http.get(
        f"{sandbox}/_sandbox/commerce7/{TENANT}/club-memberships", params=params
    ) as resp:
        found: list[dict[str, Any]] = (await resp.json())["clubMemberships"]
        return found


def active(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in found if m["cancelDate"] is None]


async def provider_requests(
    http: aiohttp.ClientSession, sandbox: str, provider: str
) -> list[dict[str, Any]]:
    async with http.get(f"{sandbox}/_sandbox/requests", params={"provider": provider}) as resp:
        found: list[dict[str, Any]] = (await resp.json())["requests"]
        return found


async def add_fault(http: aiohttp.ClientSession, sandbox: str, **fault: Any) -> str:
    async with http.post(f"{sandbox}/_sandbox/faults", json=fault) as resp:
        assert resp.status == 201, await resp.text()
        fault_id: str = (await resp.json())["id"]
        return fault_id


async def wrong_at_providers(
    db: asyncpg.Pool, http: aiohttp.ClientSession, sandbox: str
) -> list[str]:
    """Customers whose provider state differs from their active enrolment in Postgres.

    Shopify: exactly the tier's tag among crmsync's tags. Commerce7: exactly one active
    membership in crmsync's clubs, in the tier's club (none without a tier).
    """
    tiers = await db.fetch("SELECT shopify_tag, commerce7_club_id FROM tiers")
    our_tags = {t["shopify_tag"].lower() for t in tiers}
    our_clubs = {t["commerce7_club_id"] for t in tiers}
    rows = await db.fetch(
        """
        SELECT c.provider, c.external_id, t.shopify_tag, t.commerce7_club_id
        FROM customers c
        LEFT JOIN enrolments e ON e.customer_id = c.id AND e.status = 'active'
        LEFT JOIN tiers t ON t.id = e.tier_id
        """
    )
    tags = await all_shopify_tags(http, sandbox)
    clubs: dict[str, list[str]] = {}
    for m in active(await memberships(http, sandbox)):
        if m["clubId"] in our_clubs:
            clubs.setdefault(m["customerId"], []).append(m["clubId"])
    wrong = []
    for row in rows:
        if row["provider"] == "shopify":
            have = sorted(
                t.lower() for t in tags.get(row["external_id"], []) if t.lower() in our_tags
            )
            want = [row["shopify_tag"].lower()] if row["shopify_tag"] else []
        else:
            have = sorted(clubs.get(row["external_id"], []))
            want = [row["commerce7_club_id"]] if row["commerce7_club_id"] else []
        if have != want:
            wrong.append(f"{row['provider']}:{row['external_id']} has {have}, wants {want}")
    return wrong
