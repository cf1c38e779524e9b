"""The event contract as an AsyncAPI 3.0 document, generated from the code.

Everything comes from what the services use at run time: the exchange and queue names
from :class:`shared.topology.Topology`, each queue's bindings from
:mod:`shared.queues` and :data:`shared.jobs.JOB_QUEUES`, each event type's data schema
from its pydantic model (:data:`EVENT_TYPES`), and the CloudEvents 1.0 binary-mode
headers from :meth:`shared.events.CloudEvent.amqp_headers`. Served by the scheduler's
admin service at ``GET /asyncapi.json`` (no token: it holds no data).

Shape (AsyncAPI 3.0.0, https://www.asyncapi.com/docs/reference/specification/v3.0.0):
one channel per event type (``address`` = the routing key on ``crmsync.events``,
a ``send`` operation: who publishes it) and one per work queue (a ``receive``
operation: the syncer handler that consumes it, with the messages its bindings
route there); ``components.messages`` holds one message per event type with its
CloudEvents ``headers`` and ``payload`` schema, ``components.schemas`` the models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from shared import queues
from shared.events import ATTEMPT_HEADER, HEADER_PREFIX, SPECVERSION
from shared.jobs import JOB_KINDS, JOB_QUEUES, JobEvent
from shared.messages.credits import (
    BOOKING_EVENT_PREFIX,
    CONTACT_PUSH,
    CREDITS_CHANGED,
    BookingEvent,
    ContactPush,
    CreditsNotification,
)
from shared.messages.memberships import MembershipActionRequested, membership_action_type
from shared.messages.orders import (
    COMMERCE7_ORDER_ACTIONS,
    SHOPIFY_TOPIC_MODELS,
    Commerce7OrderWebhook,
    commerce7_event_type,
    shopify_event_type,
)
from shared.messages.profiles import (
    LOGIN,
    PACKAGES_CHUNK,
    PACKAGES_REFRESH,
    PACKAGES_REFRESH_STATUS,
    LoginEvent,
    PackagesChunk,
    PackagesRefresh,
    RefreshStatusQuery,
)
from shared.topology import QueueSpec, Topology

ASYNCAPI_VERSION = "3.0.0"
# The AMQP bindings' version (github.com/asyncapi/bindings, amqp/README.md).
AMQP_BINDING_VERSION = "0.3.0"
_SCHEMA_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class EventType:
    """One event type: its routing key (= CloudEvents ``type``), data model, publisher."""

    routing_key: str
    model: type[BaseModel]
    publisher: str
    summary: str


def _event_types() -> list[EventType]:
    shopify = [
        EventType(shopify_event_type(topic), model, "intake",
                  f"A Shopify {topic} webhook; data is Shopify's body as sent.")
        for topic, model in SHOPIFY_TOPIC_MODELS.items()
    ]  # fmt: skip
    commerce7 = [
        EventType(commerce7_event_type("Order", action), Commerce7OrderWebhook, "intake",
                  f"A Commerce7 Order {action} webhook; data is the whole webhook body.")
        for action in sorted(COMMERCE7_ORDER_ACTIONS)
    ]  # fmt: skip
    actions = [
        EventType(membership_action_type(p), MembershipActionRequested, "syncer (outbox)",
                  f"Make {p} equal to the customer's enrolment (provider_actions row).")
        for p in ("shopify", "commerce7")
    ]  # fmt: skip
    bookings = [
        EventType(BOOKING_EVENT_PREFIX + a, BookingEvent, "intake", f"The app's booking {a}.")
        for a in ("created", "cancelled", "attendance_marked")
    ]
    jobs = [
        EventType(kind.event_type, JobEvent, "scheduler (outbox)", f"A run of {name}.")
        for name, kind in JOB_KINDS.items()
    ]
    return [
        *shopify,
        *commerce7,
        *actions,
        EventType(CREDITS_CHANGED, CreditsNotification, "intake",
                  "The app's new absolute credit balances of one or more contacts."),
        *bookings,
        EventType(CONTACT_PUSH, ContactPush, "syncer (outbox)",
                  "A contact the drift check found different in HubSpot: send it again."),
        EventType(LOGIN, LoginEvent, "intake", "A profile logged in: sync its CRM packages."),
        EventType(PACKAGES_REFRESH, PackagesRefresh, "intake",
                  "Sync one profile's packages now (request/reply)."),
        EventType(PACKAGES_REFRESH_STATUS, RefreshStatusQuery, "intake",
                  "How is a refresh doing (request/reply)?"),
        EventType(PACKAGES_CHUNK, PackagesChunk, "syncer (outbox)",
                  "One chunk of a bulk package run."),
        *jobs,
    ]  # fmt: skip


EVENT_TYPES: list[EventType] = _event_types()


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ topic matching: ``*`` is one word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


def work_queues() -> list[QueueSpec]:
    """Every queue the services declare for events (jobs included)."""
    return [*queues.ALL, *JOB_QUEUES.values()]


def _key(name: str) -> str:
    """A component / channel key: AsyncAPI allows ``[A-Za-z0-9._-]``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _headers(event_type: str) -> dict[str, Any]:
    """The CloudEvents 1.0 binary-mode headers (:meth:`CloudEvent.amqp_headers`)."""
    p = HEADER_PREFIX
    return {
        "type": "object",
        "required": [f"{p}specversion", f"{p}id", f"{p}source", f"{p}type", f"{p}time"],
        "properties": {
            f"{p}specversion": {"type": "string", "const": SPECVERSION},
            f"{p}id": {"type": "string", "minLength": 1, "maxLength": 255,
                       "description": "unique per event; a redelivery has the same"},
            f"{p}source": {"type": "string", "minLength": 1, "format": "uri-reference"},
            f"{p}type": {"type": "string", "const": event_type},
            f"{p}time": {"type": "string", "format": "date-time"},
            f"{p}subject": {"type": "string"},
            f"{p}correlationid": {"type": "string"},
            ATTEMPT_HEADER: {"type": "integer", "minimum": 1,
                             "description": "crmsync's handler attempt counter"},
            "x-crmsync-error": {"type": "string",
                                "description": "on dead letters: why it failed"},
        },
    }  # fmt: skip


def asyncapi_document(topology: Topology | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (a JSON-ready dict) for ``topology``'s names
    (production's, without namespace, by default)."""
    topology = topology or Topology()
    exchange = {"name": topology.events_exchange, "type": "topic", "durable": True,
                "autoDelete": False, "vhost": "/"}  # fmt: skip
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event in EVENT_TYPES:
        schema = event.model.model_json_schema(by_alias=True, ref_template=_SCHEMA_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[event.model.__name__] = schema
        name = _key(event.routing_key)
        messages[name] = {
            "name": event.routing_key,
            "title": event.routing_key,
            "summary": event.summary,
            "contentType": "application/json",
            "headers": _headers(event.routing_key),
            "payload": {"$ref": _SCHEMA_REF.format(model=event.model.__name__)},
            "correlationId": {"location": f"$message.header#/{HEADER_PREFIX}correlationid"},
            "bindings": {
                "amqp": {"messageType": event.routing_key, "bindingVersion": AMQP_BINDING_VERSION}
            },
        }
        channels[name] = {
            "address": event.routing_key,
            "title": f"routing key {event.routing_key}",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": exchange,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
        }  # fmt: skip
        operations[f"publish.{name}"] = {
            "action": "send",
            "title": f"{event.publisher} publishes {event.routing_key}",
            "description": "Published persistent, with a publisher confirm, mandatory.",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            # Persistent (2) and mandatory: an unroutable publish is refused, not lost.
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
        }  # fmt: skip
    for spec in work_queues():
        queue = topology.queue(spec)
        key = _key(f"queue.{spec.name}")
        routed = [_key(e.routing_key) for e in EVENT_TYPES
                  if any(topic_matches(p, e.routing_key) for p in spec.routing_keys)]  # fmt: skip
        channels[key] = {
            "address": queue,
            "title": f"queue {queue}",
            "description": (
                f"Quorum queue bound to {topology.events_exchange} with "
                f"{', '.join(spec.routing_keys)}; failures go to {topology.dead_queue(spec)}."
            ),
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in routed},
            "bindings": {"amqp": {"is": "queue", "bindingVersion": AMQP_BINDING_VERSION,
                                  "queue": {"name": queue, "durable": True, "exclusive": False,
                                            "autoDelete": False, "vhost": "/"}}},
        }  # fmt: skip
        operations[f"consume.{_key(spec.name)}"] = {
            "action": "receive",
            "title": f"the syncer consumes {queue}",
            "description": "Acked after the work is durable; retried with delays; dead-lettered.",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in routed],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "crmsync events",
            "version": "1.0.0",
            "description": (
                "CloudEvents 1.0 in AMQP binary mode: attributes as cloudEvents:* headers,"
                " the body is the data exactly as the sender sent it. Routing key = type."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "CRMSYNC_AMQP_URL",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def asyncapi_paths() -> dict[str, Any]:
    """The OpenAPI path item of ``GET /asyncapi.json`` (for the admin API's document)."""
    return {
        "/asyncapi.json": {
            "get": {
                "summary": "The event contract (exchange, routing keys, queues, schemas)",
                "description": "AsyncAPI 3.0.0, generated from the code; no token needed.",
                "responses": {
                    "200": {
                        "description": "The AsyncAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }


async def asyncapi_handler(request: web.Request) -> web.Response:
    """``GET /asyncapi.json``: :func:`asyncapi_document`."""
    return web.json_response(asyncapi_document())
