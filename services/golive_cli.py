"""Going-live commands: ``crmsync doctor``, ``crmsync hubspot setup``, webhook registration.

Each is a client of the providers and of the database/broker, built from the same
``CRMSYNC_*`` settings the services read; none imports a service. Output is one line
per item, ``--json`` for machines; the exit status is 1 when something needs fixing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import click

from shared.clients.commerce7_webhooks import Commerce7WebhooksClient
from shared.clients.hubspot_properties import HubSpotSchemaClient
from shared.clients.shopify_webhooks import ShopifyWebhooksClient
from shared.doctor import DoctorInputs, run_doctor
from shared.errors import CrmsyncError
from shared.hubspot_setup import SetupReport, apply, inspect
from shared.logging import configure_logging
from shared.settings import IntakeSettings, ProviderSettings
from shared.webhook_registration import (
    Registration,
    commerce7_events,
    register_commerce7,
    register_shopify,
    shopify_topics,
)

T = TypeVar("T")


def _quiet() -> None:
    # The lines below are the output; provider warnings would only repeat them.
    configure_logging("ERROR", "console", service="cli")


def _run(action: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    """Run ``action`` with an HTTP session; a provider error exits 1 with its message."""

    async def go() -> T:
        async with aiohttp.ClientSession() as http:
            return await action(http)

    try:
        return asyncio.run(go())
    except CrmsyncError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _check_address(address: str) -> None:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{address!r} is not an http(s) URL", param_hint="--address")
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
        click.echo("warning: providers deliver webhooks over HTTPS only", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(as_json: bool) -> None:
    """Check everything a live deployment needs; exit 1 on any ✗.

    Postgres and migrations, RabbitMQ and queue arguments, each provider's credentials
    (one read-only call each), HubSpot's properties and custom objects, webhook
    subscriptions, placeholder secrets, the CRM views. Writes nothing anywhere.
    """
    _quiet()
    report = asyncio.run(run_doctor(DoctorInputs.from_environment()))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.ok else 1)


@click.group()
def hubspot() -> None:
    """HubSpot account set-up."""


def _setup_lines(report: SetupReport, dry_run: bool) -> list[str]:
    marks = {"present": "✓", "created": "+", "missing": "+", "conflict": "✗", "different": "⚠"}
    words = {
        "present": "exists",
        "created": "created",
        "missing": "would create" if dry_run else "missing",
    }
    lines = []
    for obj in report.objects:
        req = obj.requirement
        where = f"{req.object_type}, {req.setting}" if req.setting else req.object_type
        lines.append(f"{req.label} ({where})")
        lines += [f"  ✗ {problem}" for problem in obj.problems]
        if obj.group_created:
            lines.append("  + property group crmsync created")
        for prop in obj.properties:
            d = prop.definition
            kind = d.type + (", unique" if d.has_unique_value else "")
            text = words.get(prop.state, prop.detail)
            lines.append(f"  {marks[prop.state]} {d.name:<24} {kind:<16} {text}")
    return lines


@hubspot.command()
@click.option("--dry-run", is_flag=True, help="Print what would be created; create nothing.")
def setup(dry_run: bool) -> None:
    """Create the contact and custom object properties crmsync writes (idempotent).

    booking_ref and exam_ref are created unique (hasUniqueValue), since crmsync upserts
    by them. Exits 1 when something needs fixing in HubSpot by hand.
    """
    _quiet()
    settings = ProviderSettings()

    async def go(http: aiohttp.ClientSession) -> SetupReport:
        client = HubSpotSchemaClient.from_settings(http, settings)
        report = await inspect(client, settings)
        return report if dry_run else await apply(client, report)

    report = _run(go)
    for line in _setup_lines(report, dry_run):
        click.echo(line)
    count = len(report.with_state("missing" if dry_run else "created"))
    verb = "would create" if dry_run else "created"
    noun = "property" if count == 1 else "properties"
    click.echo(f"{verb} {count} {noun}; {len(report.problems)} problem(s) to fix in HubSpot")
    sys.exit(1 if report.problems else 0)


def _registration_lines(items: list[Registration], dry_run: bool) -> list[str]:
    lines = []
    for item in items:
        text = {"exists": "exists", "created": "created", "missing": "would create"}[item.state]
        mark = "✓" if item.state == "exists" else "+"
        lines.append(f"{mark} {item.topic:<20} {item.address}  {text}")
        lines += [f"  also delivered to {other}" for other in item.elsewhere]
    return lines


def _registration_json(items: list[Registration]) -> list[dict[str, Any]]:
    return [
        {
            "topic": i.topic,
            "address": i.address,
            "state": i.state,
            "id": i.id,
            "elsewhere": i.elsewhere,
        }
        for i in items
    ]


@click.group()
def shopify() -> None:
    """Shopify webhook subscriptions."""


@shopify.group("webhooks")
def shopify_webhooks() -> None:
    """Shop-scoped webhook subscriptions (GraphQL Admin API)."""


@shopify_webhooks.command("register")
@click.option("--address", required=True, help="intake's URL: https://HOST/webhooks/shopify")
@click.option("--dry-run", is_flag=True, help="Print what would be created; create nothing.")
@click.option("--json", "as_json", is_flag=True)
def shopify_register(address: str, dry_run: bool, as_json: bool) -> None:
    """Subscribe ADDRESS to every order topic crmsync handles, skipping existing ones."""
    _quiet()
    _check_address(address)
    settings = ProviderSettings()

    async def go(http: aiohttp.ClientSession) -> list[Registration]:
        client = ShopifyWebhooksClient.from_settings(http, settings)
        return await register_shopify(client, address, dry_run=dry_run)

    items = _run(go)
    if as_json:
        click.echo(json.dumps(_registration_json(items), indent=2))
        return
    for line in _registration_lines(items, dry_run):
        click.echo(line)


@shopify_webhooks.command("list")
@click.option("--all", "everything", is_flag=True, help="Every topic, not only crmsync's.")
@click.option("--json", "as_json", is_flag=True)
def shopify_list(everything: bool, as_json: bool) -> None:
    """List the shop's subscriptions to crmsync's topics (app-scoped TOML ones not shown)."""
    _quiet()
    settings = ProviderSettings()

    async def go(http: aiohttp.ClientSession) -> list[Any]:
        client = ShopifyWebhooksClient.from_settings(http, settings)
        return await client.list_subscriptions(None if everything else shopify_topics())

    found = _run(go)
    if as_json:
        click.echo(json.dumps([s.model_dump(by_alias=True) for s in found], indent=2))
        return
    for sub in found:
        click.echo(f"{sub.topic:<20} {sub.uri}  {sub.id}")
    if not found:
        click.echo("no subscriptions", err=True)


@click.group()
def commerce7() -> None:
    """Commerce7 web hooks."""


@commerce7.group("webhooks")
def commerce7_webhooks() -> None:
    """Web hooks of each tenant."""


def _tenants(given: tuple[str, ...]) -> list[str]:
    tenants = list(given) or IntakeSettings().commerce7_tenants
    if not tenants:
        raise click.UsageError("give --tenant, or set CRMSYNC_COMMERCE7_TENANTS")
    return tenants


@commerce7_webhooks.command("register")
@click.option("--address", required=True, help="intake's URL: https://HOST/webhooks/commerce7")
@click.option("--tenant", "tenants", multiple=True, help="[default: CRMSYNC_COMMERCE7_TENANTS]")
@click.option("--dry-run", is_flag=True, help="Print what would be created; create nothing.")
@click.option("--json", "as_json", is_flag=True)
def commerce7_register(
    address: str, tenants: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Add Order web hooks to ADDRESS for each tenant, skipping existing ones."""
    _quiet()
    _check_address(address)
    settings = ProviderSettings()
    chosen = _tenants(tenants)

    async def go(http: aiohttp.ClientSession) -> dict[str, list[Registration]]:
        client = Commerce7WebhooksClient.from_settings(http, settings)
        return {t: await register_commerce7(client, t, address, dry_run=dry_run) for t in chosen}

    by_tenant = _run(go)
    if as_json:
        click.echo(json.dumps({t: _registration_json(i) for t, i in by_tenant.items()}, indent=2))
        return
    for tenant, items in by_tenant.items():
        click.echo(f"tenant {tenant}")
        for line in _registration_lines(items, dry_run):
            click.echo("  " + line)


@commerce7_webhooks.command("list")
@click.option("--tenant", "tenants", multiple=True, help="[default: CRMSYNC_COMMERCE7_TENANTS]")
@click.option("--all", "everything", is_flag=True, help="Every object, not only Order.")
@click.option("--json", "as_json", is_flag=True)
def commerce7_list(tenants: tuple[str, ...], everything: bool, as_json: bool) -> None:
    """List each tenant's web hooks (of the Order events crmsync handles)."""
    _quiet()
    settings = ProviderSettings()
    chosen = _tenants(tenants)
    wanted = set(commerce7_events())

    async def go(http: aiohttp.ClientSession) -> dict[str, list[Any]]:
        client = Commerce7WebhooksClient.from_settings(http, settings)
        found = {t: await client.list_webhooks(t) for t in chosen}
        return {
            t: [w for w in hooks if everything or (w.object, w.action) in wanted]
            for t, hooks in found.items()
        }

    by_tenant = _run(go)
    if as_json:
        out = {t: [w.model_dump() for w in hooks] for t, hooks in by_tenant.items()}
        click.echo(json.dumps(out, indent=2))
        return
    for tenant, hooks in by_tenant.items():
        for hook in hooks:
            click.echo(f"{tenant:<16} {hook.object + ' ' + hook.action:<20} {hook.url}  {hook.id}")


COMMANDS = (doctor, hubspot, shopify, commerce7)
