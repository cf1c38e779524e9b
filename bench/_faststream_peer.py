"""bench/intake.py's phase (5): the Shopify webhook written the way FastStream shows it.

A peer to compare intake with (crmsync issue 11, item 7): an aiohttp handler that
verifies the same Shopify HMAC, validates the body with a plain pydantic model of the
fields intake reads (``model_validate_json``, what FastStream users write), publishes
the same bytes with FastStream's :class:`faststream.rabbit.RabbitBroker` to the events
exchange (topic) of intake's namespace, so to the same quorum queue
``<ns>syncer.orders``, persistent and mandatory, and answers 200 once the publish has
returned, i.e. once RabbitMQ confirmed it.

The FastStream pages followed (https://faststream.ag2.ai/latest/):

- ``rabbit/publishing/``: ``broker.publish(message, exchange=RabbitExchange(...),
  routing_key=..., persist=True, mandatory=True, headers=..., message_id=...)``;
  ``mandatory`` is on by default, ``persist`` is not.
- ``rabbit/connection/``: a broker that only publishes calls ``await broker.connect()``.
- ``getting-started/integrations/frameworks/``: in aiohttp, connect the broker at
  startup and stop it at cleanup.

Publisher confirms are FastStream's default: its ``Channel`` (the broker's
``default_channel``) has ``publisher_confirms=True`` (``faststream/rabbit/schemas/
channel.py``), so ``publish`` returns only after RabbitMQ's Basic.Ack. The same
dataclass has ``on_return_raises=False``: a mandatory message RabbitMQ returns
(unroutable) would still be answered 200. Intake raises on it (and answers 503), so
the peer sets ``on_return_raises=True`` to give the same guarantee.

Runs in its own process (``serve``), started by ``bench/intake.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
from aio_pika.abc import HeadersType
from aiohttp import web
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange
from pydantic import BaseModel, Field, ValidationError

# Intake's default CRMSYNC_PUBLISH_TIMEOUT_S: no confirm within it is a 503.
PUBLISH_TIMEOUT_S = 3.0
CLOUDEVENTS_PREFIX = "cloudEvents:"  # binary-mode AMQP headers, as intake sends them


class Customer(BaseModel):
    id: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


class Order(BaseModel):
    """The fields of a Shopify order that intake validates (shared.messages.orders)."""

    id: int
    name: str | None = None
    order_number: int | None = None
    email: str | None = None
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    total_price: Decimal
    subtotal_price: Decimal | None = None
    current_subtotal_price: Decimal | None = None
    financial_status: str | None = None
    cancelled_at: datetime | None = None
    processed_at: datetime | None = None
    updated_at: datetime | None = None
    customer: Customer | None = None
    test: bool = False


def _valid_hmac(body: bytes, header: str | None, secret: str) -> bool:
    """Shopify's check: base64 HMAC-SHA256 of the raw body, compared in constant time."""
    if not header:
        return False
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), header.strip())


broker_key = web.AppKey("broker_key", RabbitBroker)


def create_app(amqp_url: str, exchange: str, secret: str) -> web.Application:
    """The peer's aiohttp app: ``POST /webhooks/shopify`` and ``GET /readyz``.

    Args:
        exchange: the (existing, topic) events exchange to publish to, e.g.
            ``bench1234abcd.events``; the routing key is the event type
            (``shopify.orders.paid``), as intake's.
        secret: the Shopify webhook secret the bench signs with.
    """
    events = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)

    async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
        broker = RabbitBroker(
            amqp_url,
            default_channel=Channel(on_return_raises=True),
            log_level=logging.WARNING,
        )
        await broker.connect()
        app[broker_key] = broker
        yield
        await broker.stop()

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        if not _valid_hmac(body, request.headers.get("X-Shopify-Hmac-Sha256"), secret):
            return web.json_response({"error": "bad signature"}, status=401)
        topic = request.headers.get("X-Shopify-Topic", "")
        webhook_id = request.headers.get("X-Shopify-Webhook-Id", "")
        try:
            order = Order.model_validate_json(body)
        except ValidationError as exc:
            return web.Response(
                text=exc.json(include_url=False), status=422, content_type="application/json"
            )
        event_type = "shopify." + topic.replace("/", ".")
        now = datetime.now(UTC)
        shop = request.headers.get("X-Shopify-Shop-Domain", "")
        headers: HeadersType = {
            f"{CLOUDEVENTS_PREFIX}specversion": "1.0",
            f"{CLOUDEVENTS_PREFIX}id": webhook_id,
            f"{CLOUDEVENTS_PREFIX}source": f"https://{shop}",
            f"{CLOUDEVENTS_PREFIX}type": event_type,
            f"{CLOUDEVENTS_PREFIX}time": now.isoformat(),
            f"{CLOUDEVENTS_PREFIX}subject": str(order.id),
        }
        try:
            await request.app[broker_key].publish(
                body,
                exchange=events,
                routing_key=event_type,
                persist=True,
                mandatory=True,
                timeout=PUBLISH_TIMEOUT_S,
                headers=headers,
                content_type="application/json",
                message_id=webhook_id,
                message_type=event_type,
                timestamp=now,
            )
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError) as exc:
            return web.json_response({"error": f"not published: {exc!r}"}, status=503)
        return web.json_response({"status": "accepted", "id": webhook_id})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application(client_max_size=1_048_576)
    app.cleanup_ctx.append(broker_ctx)
    app.router.add_post("/webhooks/shopify", webhook)
    app.router.add_get("/readyz", ready)
    return app


def serve(port: int, amqp_url: str, exchange: str, secret: str) -> None:
    """Process entry: serve the peer on 127.0.0.1:``port`` until SIGTERM."""
    os.setsid()  # Ctrl-C reaches only the bench, which stops us
    app = create_app(amqp_url, exchange, secret)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
