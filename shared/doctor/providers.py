"""Provider checks: one read-only call each that costs the least of its rate budget.

- HubSpot: ``GET /crm/v3/properties/contacts/email`` (a properties read, one request of
  the 10 s budget), then the properties and schemas crmsync needs
  (:func:`shared.hubspot_setup.inspect`: one properties list per object type, one
  schema read per custom object);
- Shopify: GraphQL ``shop { name myshopifyDomain }`` (1 point of the cost bucket), then
  ``webhookSubscriptions`` for crmsync's topics;
- Commerce7: ``GET /club-membership?limit=1`` with each tenant's header, then its web
  hooks.

A provider whose credentials are empty is not in use: its lines are skipped. Nothing
here writes to a provider; every client is built with one try (no retry), so a doctor
run costs each provider a handful of requests at most.
"""

from __future__ import annotations

import aiohttp

from shared.clients.commerce7_webhooks import Commerce7WebhooksClient
from shared.clients.hubspot_properties import HubSpotSchemaClient
from shared.clients.shopify_webhooks import ShopifyWebhooksClient
from shared.doctor.report import Check, Status
from shared.errors import CrmsyncError, ProviderRejectedError
from shared.hubspot_setup import inspect
from shared.settings import IntakeSettings, SyncerSettings
from shared.webhook_registration import COMMERCE7_OBJECT, commerce7_events, shopify_topics

_SETUP_HINT = "run `crmsync hubspot setup` (`--dry-run` shows what it would create)"


def _refused(exc: CrmsyncError) -> str:
    status = getattr(exc, "status", None)
    prefix = f"HTTP {status}: " if status else ""
    return prefix + str(exc)


def _token_hint(provider: str, exc: CrmsyncError, setting: str) -> str:
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return f"check {setting}; README 'Going live' lists the scopes {provider} needs"
    if isinstance(exc, ProviderRejectedError):
        return f"check {setting} and the base URL"
    return "check the base URL, and that the provider (or the sandbox) is reachable"


async def check_hubspot(http: aiohttp.ClientSession, settings: SyncerSettings) -> list[Check]:
    """``hubspot.credentials`` and ``hubspot.schema``."""
    token = settings.hubspot_access_token.get_secret_value()
    if not token:
        return [
            Check(
                "hubspot.credentials",
                "HubSpot credentials",
                Status.skip,
                "CRMSYNC_HUBSPOT_ACCESS_TOKEN is empty: HubSpot not in use",
            ),
            Check("hubspot.schema", "HubSpot properties", Status.skip, "HubSpot not in use"),
        ]
    client = HubSpotSchemaClient.from_settings(http, settings, max_tries=1)
    try:
        await client.get_property("contacts", "email")
    except CrmsyncError as exc:
        return [
            Check(
                "hubspot.credentials",
                "HubSpot credentials",
                Status.fail,
                f"{settings.hubspot_base_url}: {_refused(exc)}",
                _token_hint("HubSpot", exc, "CRMSYNC_HUBSPOT_ACCESS_TOKEN"),
            ),
            Check(
                "hubspot.schema",
                "HubSpot properties",
                Status.skip,
                "not checked: the credentials failed",
            ),
        ]
    credentials = Check(
        "hubspot.credentials",
        "HubSpot credentials",
        Status.ok,
        f"{settings.hubspot_base_url}: the access token reads properties",
    )
    try:
        report = await inspect(client, settings)
    except CrmsyncError as exc:
        return [
            credentials,
            Check(
                "hubspot.schema",
                "HubSpot properties",
                Status.fail,
                f"reading properties and schemas failed: {_refused(exc)}",
                "the token needs crm.schemas.contacts.read and crm.schemas.custom.read",
            ),
        ]
    missing = [
        f"{o.requirement.label}.{p.definition.name}" for o, p in report.with_state("missing")
    ]
    problems = report.problems
    different = [
        f"{o.requirement.label}.{p.definition.name} {p.detail}"
        for o, p in report.with_state("different")
    ]
    if problems or missing:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + problems
        hint = _SETUP_HINT if missing else "fix these in HubSpot, then run this again"
        status = Check("hubspot.schema", "HubSpot properties", Status.fail, "; ".join(parts), hint)
    elif different:
        status = Check(
            "hubspot.schema",
            "HubSpot properties",
            Status.warn,
            "; ".join(different),
            "values are sent as strings; HubSpot may refuse some",
        )
    else:
        count = sum(len(o.properties) for o in report.objects)
        status = Check(
            "hubspot.schema",
            "HubSpot properties",
            Status.ok,
            f"all {count} properties and both custom object schemas present",
        )
    return [credentials, status]


async def check_shopify(http: aiohttp.ClientSession, settings: SyncerSettings) -> list[Check]:
    """``shopify.credentials`` and ``shopify.webhooks`` (a warning when a topic has no
    subscription: crmsync would never hear of those orders)."""
    if not settings.shopify_access_token.get_secret_value():
        return [
            Check(
                "shopify.credentials",
                "Shopify credentials",
                Status.skip,
                "CRMSYNC_SHOPIFY_ACCESS_TOKEN is empty: Shopify not in use",
            ),
            Check("shopify.webhooks", "Shopify webhooks", Status.skip, "Shopify not in use"),
        ]
    client = ShopifyWebhooksClient.from_settings(http, settings, max_tries=1)
    try:
        shop = await client.shop()
    except CrmsyncError as exc:
        return [
            Check(
                "shopify.credentials",
                "Shopify credentials",
                Status.fail,
                f"{settings.shopify_base_url}: {_refused(exc)}",
                _token_hint("Shopify", exc, "CRMSYNC_SHOPIFY_ACCESS_TOKEN"),
            ),
            Check(
                "shopify.webhooks",
                "Shopify webhooks",
                Status.skip,
                "not checked: the credentials failed",
            ),
        ]
    credentials = Check(
        "shopify.credentials",
        "Shopify credentials",
        Status.ok,
        f"shop {shop.name!r} ({shop.myshopify_domain or settings.shopify_base_url})",
    )
    try:
        topics = shopify_topics()
        found = {s.topic for s in await client.list_subscriptions(topics)}
    except CrmsyncError as exc:
        return [
            credentials,
            Check(
                "shopify.webhooks",
                "Shopify webhooks",
                Status.warn,
                f"cannot list subscriptions: {_refused(exc)}",
                "the token needs the read_orders scope",
            ),
        ]
    lacking = [t for t in topics if t not in found]
    if lacking:
        return [
            credentials,
            Check(
                "shopify.webhooks",
                "Shopify webhooks",
                Status.warn,
                f"no subscription for {', '.join(lacking)}",
                "crmsync shopify webhooks register --address"
                " https://<intake host>/webhooks/shopify",
            ),
        ]
    return [
        credentials,
        Check(
            "shopify.webhooks", "Shopify webhooks", Status.ok, f"subscribed to {', '.join(topics)}"
        ),
    ]


async def check_commerce7(
    http: aiohttp.ClientSession, settings: SyncerSettings, intake: IntakeSettings
) -> list[Check]:
    """``commerce7.credentials`` (each tenant of ``CRMSYNC_COMMERCE7_TENANTS``) and
    ``commerce7.webhooks`` (a warning when a tenant lacks an Order web hook)."""
    tenants = intake.commerce7_tenants
    secret = settings.commerce7_app_secret.get_secret_value()
    if not secret or not tenants:
        why = "no tenant in CRMSYNC_COMMERCE7_TENANTS"
        if not secret:
            why = "CRMSYNC_COMMERCE7_APP_SECRET is empty"
        return [
            Check(
                "commerce7.credentials",
                "Commerce7 credentials",
                Status.skip,
                f"{why}: Commerce7 not in use",
            ),
            Check("commerce7.webhooks", "Commerce7 web hooks", Status.skip, "Commerce7 not in use"),
        ]
    client = Commerce7WebhooksClient.from_settings(http, settings, max_tries=1)
    for tenant in tenants:
        try:
            await client.probe(tenant)
        except CrmsyncError as exc:
            return [
                Check(
                    "commerce7.credentials",
                    "Commerce7 credentials",
                    Status.fail,
                    f"{settings.commerce7_base_url} (tenant {tenant!r}): {_refused(exc)}",
                    _token_hint(
                        "Commerce7", exc, "CRMSYNC_COMMERCE7_APP_ID / CRMSYNC_COMMERCE7_APP_SECRET"
                    ),
                ),
                Check(
                    "commerce7.webhooks",
                    "Commerce7 web hooks",
                    Status.skip,
                    "not checked: the credentials failed",
                ),
            ]
    credentials = Check(
        "commerce7.credentials",
        "Commerce7 credentials",
        Status.ok,
        f"app {settings.commerce7_app_id!r} reads tenant(s) {', '.join(tenants)}",
    )
    lacking = []
    try:
        for tenant in tenants:
            found = {(w.object, w.action) for w in await client.list_webhooks(tenant)}
            lacking += [f"{tenant}: {o} {a}" for o, a in commerce7_events() if (o, a) not in found]
    except CrmsyncError as exc:
        return [
            credentials,
            Check(
                "commerce7.webhooks",
                "Commerce7 web hooks",
                Status.warn,
                f"cannot list web hooks: {_refused(exc)}",
                "the app needs the Webhook permission",
            ),
        ]
    if lacking:
        return [
            credentials,
            Check(
                "commerce7.webhooks",
                "Commerce7 web hooks",
                Status.warn,
                f"no {COMMERCE7_OBJECT} web hook for {'; '.join(lacking)}",
                "crmsync commerce7 webhooks register --address"
                " https://<intake host>/webhooks/commerce7",
            ),
        ]
    events = ", ".join(f"{o} {a}" for o, a in commerce7_events())
    return [
        credentials,
        Check(
            "commerce7.webhooks",
            "Commerce7 web hooks",
            Status.ok,
            f"{events} registered for every tenant",
        ),
    ]
