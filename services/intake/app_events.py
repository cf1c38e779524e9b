"""App backend events: ``POST /v1/events/credits`` and ``POST /v1/events/bookings``.

Authenticated by API key (``Authorization: Bearer <key>``, keys in
``CRMSYNC_API_KEYS``). The event id is ``<key name>:<idempotencyKey>``: the same
notification sent twice is one event, and two backends cannot collide. Answers 202
once the broker has confirmed; the syncer writes Postgres within milliseconds.
"""

from __future__ import annotations

from aiohttp import web

from services.intake.auth import api_key_name
from services.intake.keys import settings_key
from services.intake.publish import publish_or_503
from services.intake.webhooks.body import parse_body
from shared.events import CloudEvent
from shared.messages.credits import (
    BOOKING_EVENT_PREFIX,
    CREDITS_CHANGED,
    BookingEvent,
    CreditsNotification,
)
from shared.messages.types import utc_event_time
from shared.problems import Problem


def require_api_key(request: web.Request) -> str:
    """The calling backend's key name.

    Raises:
        Problem: 401 with ``WWW-Authenticate: Bearer`` when the key is missing or unknown.
    """
    name = api_key_name(request.headers.get("Authorization"), request.app[settings_key].api_keys)
    if name is None:
        raise Problem(
            401,
            "Unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="crmsync"'},
        )
    return name


def accepted(event: CloudEvent) -> web.Response:
    """202 ``{"status": "accepted", "id": <event id>}``."""
    return web.json_response({"status": "accepted", "id": event.id}, status=202)


async def credits_event(request: web.Request) -> web.Response:
    """A credit-change notification (one contact, or up to 1,000 in ``items``).

    Errors: 401 no or unknown key; 400 malformed JSON; 413 too large; 422 invalid
    fields (unknown credit type, negative balance, no contact key), by JSON Pointer;
    503 broker unavailable.
    """
    caller = require_api_key(request)
    body = await request.read()
    notification = parse_body(CreditsNotification, body)
    event = CloudEvent.create(
        id=f"{caller}:{notification.idempotency_key}",
        type=CREDITS_CHANGED,
        source=f"urn:crmsync:app:{caller}",
        subject=notification.reason,
        time=utc_event_time(notification.occurred_at),
        data=body,
    )
    await publish_or_503(request, event)
    return accepted(event)


async def bookings_event(request: web.Request) -> web.Response:
    """A booking created, cancelled or attendance marked. Errors as for credits."""
    caller = require_api_key(request)
    body = await request.read()
    booking = parse_body(BookingEvent, body)
    event = CloudEvent.create(
        id=f"{caller}:{booking.idempotency_key}",
        type=BOOKING_EVENT_PREFIX + booking.action,
        source=f"urn:crmsync:app:{caller}",
        subject=booking.booking.booking_ref,
        time=utc_event_time(booking.occurred_at),
        data=body,
    )
    await publish_or_503(request, event)
    return accepted(event)
