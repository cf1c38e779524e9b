"""``POST /webhooks/shopify``: Shopify order webhooks.

Headers per WEBHOOKS.md §2 (Shopify's ``ShopifyHeader`` names; the newer un-prefixed
``shopify-*`` names are accepted too). The event id is ``X-Shopify-Webhook-Id``,
which Shopify calls the idempotency key: its retries (8 over 4 hours) keep it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from services.intake.auth import verify_shopify_hmac
from services.intake.keys import settings_key
from services.intake.publish import publish_or_503
from services.intake.webhooks.body import parse_body
from services.intake.webhooks.topics import shopify_topic_label
from shared.events import CloudEvent
from shared.messages.orders import SHOPIFY_ORDER_TOPICS, SHOPIFY_TOPIC_MODELS, shopify_event_type
from shared.metrics import WEBHOOKS_IGNORED
from shared.problems import Problem

log = structlog.get_logger(__name__)


class _AnyObject(BaseModel):
    """Any JSON object: the body of a topic crmsync does not read."""

    model_config = ConfigDict(extra="allow")


def _header(request: web.Request, name: str) -> str | None:
    """``X-Shopify-<name>``, or the Events-style ``shopify-<name>``."""
    return request.headers.get(f"X-Shopify-{name}") or request.headers.get(f"shopify-{name}")


# A webhook triggered further than this from now has a wrong X-Shopify-Triggered-At
# (the header is not signed): the envelope takes the time of receipt instead.
_MAX_TRIGGER_SKEW = timedelta(days=1)


def _triggered_at(value: str | None) -> datetime:
    """``X-Shopify-Triggered-At`` in UTC when it parses, has an offset and is within a
    day of now (Shopify retries for 4 hours); the time of receipt otherwise."""
    now = datetime.now(UTC)
    if value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return now
        if parsed.tzinfo is not None:
            try:
                utc = parsed.astimezone(UTC)
            except OverflowError:
                return now
            if abs(utc - now) <= _MAX_TRIGGER_SKEW + timedelta(hours=4):
                return utc
    return now


async def shopify_webhook(request: web.Request) -> web.Response:
    """Verify, validate, publish, then answer 200 (Shopify waits 5 s at most).

    Errors: 401 bad or missing signature; 400 missing headers, malformed JSON or a
    body that is not a JSON object (for every topic);
    413 body over the limit; 422 an order without the fields crmsync needs (with
    their JSON Pointers); 503 broker unavailable. Topics crmsync does not handle get
    200 and are counted in ``crmsync_webhooks_ignored_total``, so Shopify does not
    retry them for four hours.
    """
    settings = request.app[settings_key]
    body = await request.read()
    if not verify_shopify_hmac(
        body,
        _header(request, "Hmac-Sha256"),
        settings.shopify_webhook_secret.get_secret_value(),
        settings.shopify_webhook_secret_previous.get_secret_value(),
    ):
        raise Problem(401, "Unauthorized", "X-Shopify-Hmac-Sha256 does not match the body")
    topic = _header(request, "Topic")
    webhook_id = _header(request, "Webhook-Id")
    if not topic or not webhook_id:
        missing = "X-Shopify-Topic" if not topic else "X-Shopify-Webhook-Id"
        raise Problem(400, "Bad Request", f"missing header {missing}")
    if topic not in SHOPIFY_ORDER_TOPICS:
        parse_body(_AnyObject, body)  # 400 unless a JSON object, whatever the topic
        WEBHOOKS_IGNORED.labels("shopify", shopify_topic_label(topic)).inc()
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
