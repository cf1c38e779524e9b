"""Intake's aiohttp application: ``create_app(settings) -> web.Application``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from services.intake.app_events import bookings_event, credits_event
from services.intake.keys import (
    broker_key,
    connection_name_key,
    replies_key,
    settings_key,
    supervisor_key,
)
from services.intake.openapi import openapi_document
from services.intake.profiles import login_event, refresh_packages, refresh_status
from services.intake.replies import Replies
from services.intake.security import warn_on_startup
from services.intake.webhooks.commerce7 import commerce7_webhook
from services.intake.webhooks.shopify import shopify_webhook
from shared import queues
from shared.broker import Broker
from shared.metrics import metrics_handler
from shared.problems import problem_middleware
from shared.readiness import readyz_response
from shared.settings import IntakeSettings
from shared.supervisor import Supervisor
from shared.topology import Topology

log = structlog.get_logger(__name__)

# After SIGTERM, how long in-flight requests may take to finish before the broker
# closes (aiohttp's ``shutdown_timeout``), in seconds.
SHUTDOWN_TIMEOUT_S = 10.0


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    broker = Broker(
        settings.amqp_url.get_secret_value(),
        Topology(settings.amqp_namespace, group_size=settings.quorum_group_size()),
        queues.ALL,
        name=app[connection_name_key],
        publish_timeout_s=settings.publish_timeout_s,
        reconnect_interval_s=settings.broker_reconnect_interval_s,
    )
    supervisor = Supervisor.from_settings(settings)
    app[broker_key] = broker
    app[supervisor_key] = supervisor
    app[replies_key] = Replies(broker)
    # In the background: intake serves (503) while RabbitMQ is away, see /readyz.
    await broker.start(supervisor)
    yield
    # Bounded: closing a robust channel while RabbitMQ is away waits for it.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[replies_key].close(), 5)
    await supervisor.stop()
    await broker.close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 while the broker task runs (connected, topology declared); else a 503
    problem naming why (:mod:`shared.readiness`)."""
    return readyz_response(request.app[supervisor_key], "intake")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(
    settings: IntakeSettings, *, connection_name: str = "crmsync-intake"
) -> web.Application:
    """Build intake. The broker connects in the background on startup.

    Args:
        settings: intake's settings.
        connection_name: the broker connection's name in RabbitMQ's management console
            (``crmsync-intake-w2`` for worker 2 of ``crmsync intake --workers N``).
    """
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[problem_middleware])
    app[settings_key] = settings
    app[connection_name_key] = connection_name
    app.on_startup.append(warn_on_startup)
    app.cleanup_ctx.append(_broker_ctx)
    app.router.add_post("/webhooks/shopify", shopify_webhook)
    app.router.add_post("/webhooks/commerce7", commerce7_webhook)
    app.router.add_post("/v1/events/credits", credits_event)
    app.router.add_post("/v1/events/bookings", bookings_event)
    app.router.add_post("/v1/events/login", login_event)
    app.router.add_post("/v1/profiles/{profileId}/packages/sync", refresh_packages)
    app.router.add_get("/v1/profiles/{profileId}/packages/sync/{requestId}", refresh_status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi)
    return app
