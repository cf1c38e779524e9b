"""The ``crmsync`` command: one entry point for every service and tool.

This module is the composition root: it alone imports more than one service.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import click
from aiohttp import web

from services.golive_cli import COMMANDS as GOLIVE_COMMANDS
from services.ops_cli import actions, dead_letters, trace_command
from services.outbox_cli import outbox
from services.sandbox.crm_cli import seed_crm
from services.scheduler.cli import jobs, runs, scheduler, trigger
from shared.logging import configure_logging
from shared.settings import (
    CommonSettings,
    IntakeSettings,
    ProviderSettings,
    SandboxSettings,
    SyncerSettings,
    exit_if_unsafe,
)


def _logging(settings: CommonSettings | SandboxSettings, service: str) -> None:
    configure_logging(settings.log_level, settings.log_format, service=service)


@click.group()
def main() -> None:
    """crmsync: keep an app's Postgres and its CRMs in sync."""


@main.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations (safe to run anywhere)."""
    from shared.migrate import migrate as run_migrations

    settings = CommonSettings()
    _logging(settings, "migrate")
    applied = asyncio.run(run_migrations(settings.database_url))
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


@main.command()
@click.option(
    "--host", default=None, help="Bind address [default: 127.0.0.1, CRMSYNC_INTAKE_HOST]."
)
@click.option("--port", type=int, default=None, help="Port [default: 8080, CRMSYNC_INTAKE_PORT].")
def intake(host: str | None, port: int | None) -> None:
    """Run intake: webhooks and app events in, RabbitMQ out."""
    from services.intake.app import create_app

    settings = IntakeSettings()
    exit_if_unsafe(settings, "intake")
    _logging(settings, "intake")
    web.run_app(
        create_app(settings),
        host=host or settings.intake_host,
        port=port or settings.intake_port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
    )


@main.command()
@click.option("--host", default=None, help="Health/metrics bind address [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Health/metrics port [default: 8081].")
def syncer(host: str | None, port: int | None) -> None:
    """Run a syncer replica: consume events, write Postgres, call the CRMs."""
    from services.syncer.main import serve

    settings = SyncerSettings()
    exit_if_unsafe(settings, "syncer")
    _logging(settings, "syncer")
    asyncio.run(serve(settings, host or settings.syncer_host, port or settings.syncer_port))


@main.command()
@click.option("--host", default=None, help="Bind address [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8090].")
def sandbox(host: str | None, port: int | None) -> None:
    """Run the local CRM sandbox (Shopify, Commerce7 subsets) for development and tests."""
    from services.sandbox.app import create_app

    settings = SandboxSettings()
    _logging(settings, "sandbox")
    web.run_app(
        create_app(ProviderSettings()),
        host=host or settings.sandbox_host,
        port=port or settings.sandbox_port,
        access_log=None,
        print=None,
    )


@main.command()
@click.option("--with-sandbox/--without-sandbox", default=True, show_default=True)
@click.option("--syncers", type=int, default=1, show_default=True, help="Syncer replicas.")
def dev(with_sandbox: bool, syncers: int) -> None:
    """Migrate, then run sandbox, intake, syncer(s) and scheduler in the foreground."""
    from services.devrun import run_dev

    sys.exit(asyncio.run(run_dev(with_sandbox=with_sandbox, syncers=syncers)))


@main.command("send-webhook")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--provider", type=click.Choice(["shopify", "commerce7"]), default="shopify", show_default=True
)
@click.option("--topic", default="orders/paid", show_default=True, help="Shopify topic.")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="Intake base URL.")
@click.option("--webhook-id", default=None, help="X-Shopify-Webhook-Id [default: a new UUID].")
def send_webhook(file: Path, provider: str, topic: str, url: str, webhook_id: str | None) -> None:
    """Sign FILE's exact bytes as the provider would and POST it to intake.

    Shopify: HMAC with CRMSYNC_SHOPIFY_WEBHOOK_SECRET. Commerce7: Basic auth with
    CRMSYNC_COMMERCE7_WEBHOOK_USERNAME / _PASSWORD (from the environment or .env).
    """
    from services.intake.auth import shopify_hmac

    body = file.read_bytes()
    headers = {"Content-Type": "application/json"}
    if provider == "shopify":
        settings = IntakeSettings()
        headers |= {
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Shop-Domain": "crmsync-dev.myshopify.com",
            "X-Shopify-API-Version": "2026-07",
            "X-Shopify-Hmac-Sha256": shopify_hmac(
                body, settings.shopify_webhook_secret.get_secret_value()
            ),
        }
        path = "/webhooks/shopify"
    else:
        settings = IntakeSettings()
        if settings.commerce7_webhook_username:
            import base64

            password = settings.commerce7_webhook_password.get_secret_value()
            creds = f"{settings.commerce7_webhook_username}:{password}"
            headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        path = "/webhooks/commerce7"
    status, text = asyncio.run(_post(url.rstrip("/") + path, body, headers))
    click.echo(f"{status} {text}")
    sys.exit(0 if 200 <= status < 300 else 1)


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


for _command in (scheduler, jobs, trigger, runs, seed_crm, outbox, *GOLIVE_COMMANDS):
    main.add_command(_command)
main.add_command(dead_letters)
main.add_command(actions)
main.add_command(trace_command)

if __name__ == "__main__":
    main()
