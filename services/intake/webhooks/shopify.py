"""``POST /webhooks/shopify``: Shopify order webhooks.

Headers per WEBHOOKS.md §2 (Shopify's ``ShopifyHeader`` names; the newer un-prefixed
``shopify-*`` names are accepted too). The event id is ``X-Shopify-Webhook-Id``,
which Shopify calls the idempotency key: its retries (8 over 4 hours) keep it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from aiohttp import web

from services.intake.auth import verify_shopify_hmac
from services.intake.keys import settings_key
from services.intake.publish import publish_or_503
from services.intake.webhooks.body import parse_body
from shared.events import CloudEvent
from shared.messages.orders import SHOPIFY_ORDER_TOPICS, SHOPIFY_TOPIC_MODELS, shopify_event_type
from shared.metrics import WEBHOOKS_IGNORED
from shared.problems import Problem

log = structlog.get_logger(__name__)


def _header(request: web.Request, name: str) -> str | None:
    """``X-Shopify-<name>``, or the Events-style ``shopify-<name>``."""
    return request.headers.get(f"X-Shopify-{name}") or request.headers.get(f"shopify-{name}")


def _triggered_at(value: str | None) -> datetime:
    if value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


async def shopify_webhook(request: web.Request) -> web.Response:
    """Verify, validate, publish, then answer 200 (Shopify waits 5 s at most).

    Errors: 401 bad or missing signature; 400 missing headers or malformed JSON;
    413 body over the limit; 422 an order without the fields crmsync needs (with
    their JSON Pointers); 503 broker unavailable. Topics crmsync does not handle get
    200 and are counted in ``crmsync_webhooks_ignored_total``, so Shopify does not
    retry them for four hours.
    """
    settings = request.app[settings_key]
    body = await request.read()
    if not verify_shopify_hmac(
        body, _header(request, "Hmac-Sha256"), settings.shopify_webhook_secret.get_secret_value()
    ):
        raise Problem(401, "Unauthorized", "X-Shopify-Hmac-Sha256 does not match the body")
    topic = _header(request, "Topic")
    webhook_id = _header(request, "Webhook-Id")
    if not topic or not webhook_id:
        missing = "X-Shopify-Topic" if not topic else "X-Shopify-Webhook-Id"
        raise Problem(400, "Bad Request", f"missing header {missing}")
    if topic not in SHOPIFY_ORDER_TOPICS:
        WEBHOOKS_IGNORED.labels("shopify", topic).inc()
        log.info("webhook.ignored", provider="shopify", topic=topic, webhook_id=webhook_id)
        return web.json_response({"status": "ignored", "topic": topic})
    order = parse_body(SHOPIFY_TOPIC_MODELS[topic], body)
    shop = _header(request, "Shop-Domain")
    event = CloudEvent.create(
        id=webhook_id,
        type=shopify_event_type(topic),
        source=f"https://{shop}" if shop else "urn:crmsync:intake:shopify",
        subject=order.order_ref,
        time=_triggered_at(_header(request, "Triggered-At")),
        data=body,
    )
    await publish_or_503(request, event)
    return web.json_response({"status": "accepted", "id": event.id})
