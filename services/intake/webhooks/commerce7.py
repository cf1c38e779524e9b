"""``POST /webhooks/commerce7``: Commerce7 webhooks (Order Create / Update).

Commerce7 signs nothing; it sends Basic auth when the hook is configured with a
username and password (NOTES.md §3, "configuring-your-webhook"). Intake requires
those credentials (the current or, during a rotation, the previous password) and
refuses every webhook when none are configured, unless
``CRMSYNC_COMMERCE7_ALLOW_UNAUTHENTICATED=true`` (local use); it always checks
``tenantId`` against the allow-list.
"""

from __future__ import annotations

import uuid

import structlog
from aiohttp import web

from services.intake.auth import verify_basic_auth
from services.intake.keys import settings_key
from services.intake.publish import publish_or_503
from services.intake.webhooks.body import parse_body
from services.intake.webhooks.topics import commerce7_topic_label
from shared.events import CloudEvent
from shared.messages.orders import (
    COMMERCE7_ORDER_ACTIONS,
    Commerce7Envelope,
    Commerce7OrderWebhook,
    commerce7_event_type,
)
from shared.metrics import WEBHOOKS_IGNORED
from shared.problems import Problem
from shared.settings import IntakeSettings

log = structlog.get_logger(__name__)

# Namespace for the event ids we derive (uuid5) from a Commerce7 delivery.
_EVENT_ID_NS = uuid.UUID("0b6f5a52-6c37-4b52-8f0e-3c9f3b7d6a11")


def commerce7_event_id(webhook: Commerce7OrderWebhook) -> str:
    """A stable id for one Commerce7 change.

    ``webHookId`` names the subscription, not the delivery, so it cannot be the
    idempotency key; the order id plus its ``updatedAt`` can: a repeated delivery of
    the same change gets the same id, a later change a new one.
    """
    payload = webhook.payload
    stamp = payload.updated_at.isoformat() if payload.updated_at else ""
    key = f"{webhook.tenant_id}:{webhook.object}:{webhook.action}:{payload.id}:{stamp}"
    return str(uuid.uuid5(_EVENT_ID_NS, key))


def commerce7_credentials_configured(settings: IntakeSettings) -> bool:
    """True when both the Basic username and the password are set."""
    return bool(
        settings.commerce7_webhook_username
        and settings.commerce7_webhook_password.get_secret_value()
    )


def _require_basic_auth(request: web.Request, settings: IntakeSettings) -> None:
    """Check Commerce7's Basic credentials (current or previous password).

    Without configured credentials every webhook is refused, unless
    ``CRMSYNC_COMMERCE7_ALLOW_UNAUTHENTICATED`` is true (local use).

    Raises:
        Problem: 401 with ``WWW-Authenticate: Basic``.
    """
    if not commerce7_credentials_configured(settings):
        if settings.commerce7_allow_unauthenticated:
            return
        detail = (
            "Commerce7 webhooks need Basic credentials and none are configured "
            "(CRMSYNC_COMMERCE7_WEBHOOK_USERNAME / _PASSWORD)"
        )
    elif verify_basic_auth(
        request.headers.get("Authorization"),
        settings.commerce7_webhook_username,
        settings.commerce7_webhook_password.get_secret_value(),
        settings.commerce7_webhook_password_previous.get_secret_value(),
    ):
        return
    else:
        detail = "Basic credentials missing or wrong"
    raise Problem(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Basic realm="crmsync"'}
    )


async def commerce7_webhook(request: web.Request) -> web.Response:
    """Authenticate, validate, publish, answer 200.

    Errors: 401 Basic auth missing or wrong (or none configured, unless unauthenticated
    webhooks are explicitly allowed); 403 tenant not allowed; 400 malformed JSON; 413
    too large; 422 invalid fields, by JSON Pointer; 503 broker unavailable. Objects and
    actions crmsync does not handle get 200, counted.
    """
    settings = request.app[settings_key]
    _require_basic_auth(request, settings)
    body = await request.read()
    envelope = parse_body(Commerce7Envelope, body)
    if envelope.tenant_id not in settings.commerce7_tenants:
        raise Problem(403, "Forbidden", f"tenant {envelope.tenant_id!r} is not allowed")
    if envelope.object != "Order" or envelope.action not in COMMERCE7_ORDER_ACTIONS:
        topic = f"{envelope.object}/{envelope.action}"
        WEBHOOKS_IGNORED.labels(
            "commerce7", commerce7_topic_label(envelope.object, envelope.action)
        ).inc()
        log.info("webhook.ignored", provider="commerce7", topic=topic, tenant=envelope.tenant_id)
        return web.json_response({"status": "ignored", "topic": topic})
    webhook = parse_body(Commerce7OrderWebhook, body)
    event = CloudEvent.create(
        id=commerce7_event_id(webhook),
        type=commerce7_event_type(webhook.object, webhook.action),
        source=f"urn:commerce7:{webhook.tenant_id}",
        subject=webhook.payload.id,
        data=body,
    )
    await publish_or_503(request, event)
    return web.json_response({"status": "accepted", "id": event.id})
