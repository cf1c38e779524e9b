"""The ``crmsync`` command: one entry point for every service and tool.

This module is the composition root: it alone imports more than one service.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import click
from aiohttp import web
from pydantic import ValidationError

from services.golive_cli import COMMANDS as GOLIVE_COMMANDS
from services.ops_cli import actions, dead_letters, trace_command
from services.outbox_cli import outbox
from services.repcard_cli import repcard
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


def _serve_or_exit(
    service: str, setting: str, host: str, port: int, serve: Callable[[], None]
) -> None:
    """Run ``serve`` (which listens on ``host:port``); a port already in use is one line
    on stderr and exit status 1, checked before anything starts."""
    from services.devrun import Listen, port_in_use

    if problem := port_in_use(Listen(service, host, port, setting)):
        click.echo(problem.replace("crmsync dev:", f"crmsync {service}:", 1), err=True)
        sys.exit(1)
    serve()


def _variables(exc: ValidationError) -> str:
    """``CRMSYNC_NAME: message`` per error, never the value (it may be a secret)."""
    return "; ".join(
        f"CRMSYNC_{'__'.join(map(str, error['loc'])).upper()}: {error['msg']}"
        for error in exc.errors()
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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes sharing the port (SO_REUSEPORT, Linux) [default: 1, CRMSYNC_INTAKE_WORKERS].",
)
def intake(host: str | None, port: int | None, workers: int | None) -> None:
    """Run intake: webhooks and app events in, RabbitMQ out.

    With --workers N >= 2, a parent runs N intake processes on the one port and
    restarts any that dies (services/intake/workers.py).
    """
    from services.intake.app import SHUTDOWN_TIMEOUT_S, create_app
    from services.intake.loop import new_event_loop
    from services.intake.workers import reuse_port_problem, serve_workers

    try:
        settings = IntakeSettings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {_variables(exc)}") from None
    workers = workers or settings.intake_workers
    if workers > 1 and (problem := reuse_port_problem()):
        raise click.UsageError(problem)
    exit_if_unsafe(settings, "intake")
    _logging(settings, "intake")
    host, port = host or settings.intake_host, port or settings.intake_port
    if workers > 1:
        _serve_or_exit(
            "intake",
            "CRMSYNC_INTAKE_PORT",
            host,
            port,
            lambda: sys.exit(serve_workers(settings, host, port, workers)),
        )
        return
    _serve_or_exit(
        "intake",
        "CRMSYNC_INTAKE_PORT",
        host,
        port,
        lambda: web.run_app(
            create_app(settings),
            host=host,
            port=port,
            access_log=None,
            print=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            loop=new_event_loop(settings),
        ),
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
    host, port = host or settings.syncer_host, port or settings.syncer_port
    _serve_or_exit(
        "syncer",
        "CRMSYNC_SYNCER_PORT",
        host,
        port,
        lambda: asyncio.run(serve(settings, host, port)),
    )


@main.command()
@click.option("--host", default=None, help="Bind address [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8090].")
def sandbox(host: str | None, port: int | None) -> None:
    """Run the local CRM sandbox (Shopify, Commerce7 subsets) for development and tests."""
    from services.sandbox.app import create_app

    settings = SandboxSettings()
    _logging(settings, "sandbox")
    import structlog

    bind = (host or settings.sandbox_host, port or settings.sandbox_port)
    structlog.get_logger("services.sandbox").info(
        "sandbox.starting", url=f"http://{bind[0]}:{bind[1]}", control="/_sandbox, /healthz"
    )
    _serve_or_exit(
        "sandbox",
        "CRMSYNC_SANDBOX_PORT",
        *bind,
        lambda: web.run_app(
            create_app(ProviderSettings()),
            host=bind[0],
            port=bind[1],
            access_log=None,
            print=None,
        ),
    )


@main.command()
@click.option("--with-sandbox/--without-sandbox", default=True, show_default=True)
@click.option("--syncers", type=int, default=1, show_default=True, help="Syncer replicas.")
def dev(with_sandbox: bool, syncers: int) -> None:
    """Migrate, then run sandbox, intake, syncer(s) and scheduler in the foreground."""
    from services.devrun import SYNCER_PORT_STEP, Listen, run_dev
    from shared.settings import SchedulerSettings

    intake_settings, syncer_settings = IntakeSettings(), SyncerSettings()
    scheduler_settings, sandbox_settings = SchedulerSettings(), SandboxSettings()
    listens = [
        Listen(
            "intake", intake_settings.intake_host, intake_settings.intake_port,
            "CRMSYNC_INTAKE_PORT",
        ),
        Listen(
            "scheduler", scheduler_settings.scheduler_host, scheduler_settings.scheduler_port,
            "CRMSYNC_SCHEDULER_PORT",
        ),
    ]  # fmt: skip
    listens += [
        Listen(
            f"syncer {i + 1}",
            syncer_settings.syncer_host,
            syncer_settings.syncer_port + i * SYNCER_PORT_STEP,
            "CRMSYNC_SYNCER_PORT",
        )
        for i in range(syncers)
    ]
    if with_sandbox:
        listens.append(
            Listen(
                "sandbox", sandbox_settings.sandbox_host, sandbox_settings.sandbox_port,
                "CRMSYNC_SANDBOX_PORT",
            )
        )  # fmt: skip
    from services.devrun import management_hint

    if hint := management_hint(syncer_settings.amqp_url.get_secret_value()):
        click.echo(hint)
    code = asyncio.run(
        run_dev(
            with_sandbox=with_sandbox,
            syncers=syncers,
            syncer_port=syncer_settings.syncer_port,
            listens=listens,
        )
    )
    sys.exit(code)


@main.command("send-webhook")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--provider", type=click.Choice(["shopify", "commerce7"]), default="shopify", show_default=True
)
@click.option("--topic", default="orders/paid", show_default=True, help="Shopify topic.")
@click.option(
    "--url",
    default=None,
    help="Intake base URL [default: http://127.0.0.1:<CRMSYNC_INTAKE_PORT>, 8080].",
)
@click.option("--webhook-id", default=None, help="X-Shopify-Webhook-Id [default: a new UUID].")
def send_webhook(
    file: Path, provider: str, topic: str, url: str | None, webhook_id: str | None
) -> None:
    """Sign FILE's exact bytes as the provider would and POST it to intake.

    Shopify: HMAC with CRMSYNC_SHOPIFY_WEBHOOK_SECRET. Commerce7: Basic auth with
    CRMSYNC_COMMERCE7_WEBHOOK_USERNAME / _PASSWORD (from the environment or .env).
    """
    from services.intake.auth import shopify_hmac

    body = file.read_bytes()
    headers = {"Content-Type": "application/json"}
    settings = IntakeSettings()
    url = url or intake_url(settings)
    if provider == "shopify":
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
        if settings.commerce7_webhook_username:
            import base64

            password = settings.commerce7_webhook_password.get_secret_value()
            creds = f"{settings.commerce7_webhook_username}:{password}"
            headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        path = "/webhooks/commerce7"
    status, text = asyncio.run(_post(url.rstrip("/") + path, body, headers))
    click.echo(f"{status} {text}")
    sys.exit(0 if 200 <= status < 300 else 1)


def intake_url(settings: IntakeSettings) -> str:
    """Where this machine reaches intake: ``CRMSYNC_INTAKE_HOST`` (127.0.0.1 when it
    listens on every interface) and ``CRMSYNC_INTAKE_PORT``."""
    host = settings.intake_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, not a bind
        host = "127.0.0.1"
    return f"http://{host}:{settings.intake_port}"


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

main.add_command(repcard)  # W5: crmsync repcard sync

if __name__ == "__main__":
    main()
