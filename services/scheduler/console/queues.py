"""Queue figures for the console: RabbitMQ's management HTTP API, else passive declares.

The management API (``GET /api/queues/{vhost}``, https://www.rabbitmq.com/docs/http-api-reference)
gives each queue's ``messages``, ``consumers`` and, for classic queues,
``head_message_timestamp`` (the oldest message's ``timestamp`` property, which our
publishes set to the event's time). Without the plugin, a passive ``queue.declare``
over AMQP answers the ready count and the consumer count only; the age is then
unknown. Either way a queue that does not exist shows as such, never as 0.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiohttp
import structlog
from aio_pika.abc import AbstractConnection

log = structlog.get_logger(__name__)

# Longest wait for the management API, in seconds: the page falls back to AMQP after.
MANAGEMENT_TIMEOUT_S = 3.0

Source = Literal["management", "amqp", "unavailable"]


@dataclass(frozen=True)
class QueueFigures:
    """One queue as the broker reports it.

    Attributes:
        name: the full name (namespace included).
        exists: False if the broker has no such queue.
        messages: ready + unacknowledged (management), ready (AMQP); None if unknown.
        consumers: consumer count; None if unknown.
        oldest_age_s: seconds since the oldest message's timestamp; None if unknown.
    """

    name: str
    exists: bool
    messages: int | None
    consumers: int | None
    oldest_age_s: float | None


@dataclass(frozen=True)
class QueueReport:
    source: Source
    queues: dict[str, QueueFigures]
    note: str = ""


def management_endpoint(management_url: str, amqp_url: str) -> tuple[str, str, str, str]:
    """``(base URL, user, password, vhost)`` from the two URLs: the management URL's own
    credentials, else the AMQP URL's (its first node's), else guest; the vhost is the
    AMQP URL's path (``/`` when empty)."""
    mgmt = urlsplit(management_url)
    amqp = urlsplit(amqp_url.split(",")[0].strip())
    user = unquote(mgmt.username or amqp.username or "guest")
    password = unquote(mgmt.password or amqp.password or "guest")
    host = mgmt.hostname or "127.0.0.1"
    port = f":{mgmt.port}" if mgmt.port else ""
    base = f"{mgmt.scheme or 'http'}://{host}{port}{mgmt.path.rstrip('/')}"
    vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
    return base, user, password, vhost


async def from_management(
    http: aiohttp.ClientSession, management_url: str, amqp_url: str, names: Sequence[str]
) -> dict[str, QueueFigures]:
    """Figures of ``names`` from the management API.

    Raises:
        aiohttp.ClientError, TimeoutError: the API is not reachable or refused us.
    """
    base, user, password, vhost = management_endpoint(management_url, amqp_url)
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    url = f"{base}/api/queues/{quote(vhost, safe='')}"
    params = {"columns": "name,messages,consumers,head_message_timestamp"}
    timeout = aiohttp.ClientTimeout(total=MANAGEMENT_TIMEOUT_S)
    async with http.get(
        url, params=params, headers={"Authorization": auth}, timeout=timeout
    ) as resp:
        resp.raise_for_status()
        listed: list[dict[str, Any]] = await resp.json()
    by_name = {q.get("name"): q for q in listed}
    now = time.time()
    figures = {}
    for name in names:
        q = by_name.get(name)
        if q is None:
            figures[name] = QueueFigures(name, False, None, None, None)
            continue
        head = q.get("head_message_timestamp")
        age = max(0.0, now - float(head)) if isinstance(head, int | float) else None
        figures[name] = QueueFigures(
            name, True, _int_or_none(q.get("messages")), _int_or_none(q.get("consumers")), age
        )
    return figures


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


async def from_passive_declares(
    connection: AbstractConnection, names: Iterable[str]
) -> dict[str, QueueFigures]:
    """Figures of ``names`` by passive ``queue.declare`` (no age: AMQP does not tell).

    A missing queue closes the channel (404), so the next name gets a new one.
    """
    figures: dict[str, QueueFigures] = {}
    channel = await connection.channel()
    try:
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                figures[name] = QueueFigures(name, False, None, None, None)
                channel = await connection.channel()
                continue
            result = queue.declaration_result
            figures[name] = QueueFigures(
                name, True, int(result.message_count or 0), int(result.consumer_count or 0), None
            )
    finally:
        if not channel.is_closed:
            await channel.close()
    return figures


async def queue_report(
    http: aiohttp.ClientSession,
    connection: AbstractConnection | None,
    names: Sequence[str],
    *,
    management_url: str,
    amqp_url: str,
) -> QueueReport:
    """The figures of ``names``: management API when set and reachable, else AMQP."""
    note = ""
    if management_url:
        try:
            return QueueReport(
                "management", await from_management(http, management_url, amqp_url, names)
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            note = f"management API not reachable ({type(exc).__name__}); AMQP figures"
            log.info("console.management_unreachable", error=type(exc).__name__)
    if connection is None or connection.is_closed:
        return QueueReport("unavailable", {}, "RabbitMQ is not connected")
    try:
        figures = await asyncio.wait_for(from_passive_declares(connection, names), 10)
    except (aio_pika.exceptions.AMQPError, TimeoutError, OSError) as exc:
        return QueueReport("unavailable", {}, f"RabbitMQ did not answer ({type(exc).__name__})")
    return QueueReport("amqp", figures, note or "without the management plugin: no message ages")
