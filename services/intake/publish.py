"""Publish an accepted event and turn broker trouble into a 503 the sender retries."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from services.intake.keys import broker_key
from shared.errors import BrokerUnavailableError
from shared.events import CloudEvent
from shared.metrics import PUBLISH_FAILURES, PUBLISH_SECONDS
from shared.problems import Problem

log = structlog.get_logger(__name__)

# Seconds we suggest a sender waits before retrying while the broker is away.
RETRY_AFTER_S = 5


async def publish_or_503(request: web.Request, event: CloudEvent) -> None:
    """Publish ``event`` and wait for the broker's confirm.

    Raises:
        Problem: 503 with ``Retry-After`` when RabbitMQ is unreachable or does not
            confirm in time; nothing has been accepted, so the sender must retry.
    """
    broker = request.app[broker_key]
    started = time.perf_counter()
    try:
        await broker.publish(event)
    except BrokerUnavailableError as exc:
        PUBLISH_FAILURES.inc()
        log.warning(
            "event.publish_failed", event_id=event.id, event_type=event.type, error=str(exc)
        )
        raise Problem(
            503,
            "Service Unavailable",
            "the message broker is unavailable; nothing was accepted, retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    PUBLISH_SECONDS.observe(time.perf_counter() - started)
    log.info(
        "event.published",
        event_id=event.id,
        correlation_id=event.correlationid,
        event_type=event.type,
        routing_key=event.type,
    )
