"""Intake's OpenAPI 3.1 document, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from shared.messages.credits import BookingEvent, CreditsNotification
from shared.messages.orders import (
    COMMERCE7_ORDER_ACTIONS,
    Commerce7Envelope,
    Commerce7Order,
    ShopifyOrder,
    ShopifyRefund,
)
from shared.messages.profiles import LoginEvent
from shared.messages.types import NO_CONTROL
from shared.openapi import PROBLEM_SCHEMA, operational_paths, problem

_ACCEPTED = {
    "description": "Accepted: the broker confirmed the event (or the topic is ignored).",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "status": {"enum": ["accepted", "ignored"]},
                    "id": {"type": "string"},
                    "topic": {"type": "string"},
                },
                "required": ["status"],
            }
        }
    },
}


def _model_schemas() -> dict[str, Any]:
    """JSON Schemas of the app event bodies, generated from their pydantic models."""
    schemas: dict[str, Any] = {}
    for model in (
        CreditsNotification,
        BookingEvent,
        LoginEvent,
        ShopifyOrder,
        ShopifyRefund,
        Commerce7Envelope,
        Commerce7Order,
    ):
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


_PROFILE_ID = {
    "name": "profileId",
    "in": "path",
    "required": True,
    "description": "The app's profile id: 1 to 200 characters, no control characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_CONTROL},
}
_REQUEST_ID = {
    "name": "requestId",
    "in": "path",
    "required": True,
    "description": "The refresh's `requestId` (a UUID); anything else is a 404.",
    "schema": {"type": "string", "format": "uuid"},
}
_OBJECT = {"type": "object"}


def _json(description: str, schema: dict[str, Any] = _OBJECT) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _commerce7_webhook_schema() -> dict[str, Any]:
    """The envelope; its ``payload`` is an Order when ``object``/``action`` say so."""
    return {
        "allOf": [{"$ref": "#/components/schemas/Commerce7Envelope"}],
        "description": "Commerce7's webhook envelope. For Order Create/Update `payload` is "
        "the Order; other objects and actions are acknowledged and ignored.",
        "if": {
            "required": ["object", "action"],
            "properties": {
                "object": {"const": "Order"},
                "action": {"enum": sorted(COMMERCE7_ORDER_ACTIONS)},
            },
        },
        "then": {
            "required": ["payload"],
            "properties": {"payload": {"$ref": "#/components/schemas/Commerce7Order"}},
        },
    }


def _app_event(summary: str, schema: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                },
            },
            "responses": {
                "202": _ACCEPTED,
                "400": problem("Malformed JSON."),
                "401": problem("Missing or unknown API key."),
                "413": problem("Body over the size limit."),
                "422": problem("Invalid fields; `errors[].pointer` names each."),
                "503": problem("Broker unavailable; nothing accepted, retry."),
            },
        }
    }


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def openapi_document() -> dict[str, Any]:
    """The document; webhook shapes by hand, app events generated from their models.

    ``tests/intake/test_openapi.py`` checks it names every route.
    """
    webhook_errors = {
        "400": problem("Malformed JSON, a body that is not a JSON object, or a missing header."),
        "401": problem("Bad signature or credentials."),
        "413": problem("Body over the size limit (1 MiB by default)."),
        "422": problem("Invalid or missing fields; `errors[].pointer` names each."),
        "503": problem("Broker unavailable; nothing accepted, retry (see Retry-After)."),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crmsync intake",
            "version": "1.0.0",
            "description": "Receives webhooks and app events; answers 2xx only once RabbitMQ "
            "has confirmed the event.",
        },
        "paths": {
            "/webhooks/shopify": {
                "post": {
                    "summary": "Shopify order webhook (orders/create, orders/paid, "
                    "orders/updated, orders/cancelled, refunds/create)",
                    "description": "The body is the topic's REST resource, always a JSON "
                    "object. For the order topics it is a ShopifyOrder, for refunds/create a "
                    "ShopifyRefund (`#/components/schemas/...`; 422 otherwise); other topics "
                    "are acknowledged (200, `ignored`) and not read further.",
                    "parameters": [
                        _header(
                            "X-Shopify-Hmac-Sha256",
                            "Base64 HMAC-SHA256 of the raw body, keyed by the app's client "
                            "secret (CRMSYNC_SHOPIFY_WEBHOOK_SECRET or, during a rotation, "
                            "CRMSYNC_SHOPIFY_WEBHOOK_SECRET_PREVIOUS).",
                        ),
                        _header("X-Shopify-Topic", "`orders/paid`, ..."),
                        _header("X-Shopify-Webhook-Id", "The delivery's idempotency key."),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _OBJECT}},
                    },
                    "responses": {"200": _ACCEPTED, **webhook_errors},
                }
            },
            "/webhooks/commerce7": {
                "post": {
                    "summary": "Commerce7 webhook (Order Create / Update handled)",
                    "description": "Basic credentials are required "
                    "(CRMSYNC_COMMERCE7_WEBHOOK_USERNAME / _PASSWORD, or _PASSWORD_PREVIOUS "
                    "during a rotation), unless CRMSYNC_COMMERCE7_ALLOW_UNAUTHENTICATED=true.",
                    "security": [{"basic": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Commerce7Webhook"}
                            }
                        },
                    },
                    "responses": {
                        "200": _ACCEPTED,
                        **webhook_errors,
                        "403": problem("tenantId not in CRMSYNC_COMMERCE7_TENANTS."),
                    },
                }
            },
            "/v1/events/credits": _app_event(
                "Credit-change notification (one contact, or up to 1,000 in items)",
                "CreditsNotification",
            ),
            "/v1/events/bookings": _app_event(
                "Booking created, cancelled or attendance marked", "BookingEvent"
            ),
            "/v1/events/login": _app_event("A profile logged in (W1 package sync)", "LoginEvent"),
            "/v1/profiles/{profileId}/packages/sync": {
                "post": {
                    "summary": "Sync one profile's packages now",
                    "description": "200 with the packages when the sync finishes within "
                    "CRMSYNC_REFRESH_WAIT_S; otherwise 202 with the request to follow at "
                    "statusUrl. Never a 5xx because the CRM is slow.",
                    "security": [{"apiKey": []}],
                    "parameters": [_PROFILE_ID],
                    "responses": {
                        "200": _json("The profile's packages, freshly synced."),
                        "202": {
                            **_json("Still syncing: follow `statusUrl` (also Location)."),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        "401": problem("Missing or unknown API key."),
                        "404": problem("No such profile."),
                        "422": problem("A profileId that cannot be one; `errors[].parameter`."),
                        "503": problem("Broker unavailable."),
                    },
                }
            },
            "/v1/profiles/{profileId}/packages/sync/{requestId}": {
                "get": {
                    "summary": "Status of a package refresh (running, succeeded, failed)",
                    "security": [{"apiKey": []}],
                    "parameters": [_PROFILE_ID, _REQUEST_ID],
                    "responses": {
                        "200": _json("The request's status and, when done, its result."),
                        "401": problem("Missing or unknown API key."),
                        "404": problem("No such refresh for this profile."),
                        "422": problem("A profileId that cannot be one; `errors[].parameter`."),
                        "503": problem("Broker unavailable or no syncer answered."),
                    },
                }
            },
            **operational_paths("RabbitMQ"),
        },
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "CRMSYNC_API_KEYS"},
            },
            "schemas": {
                **_model_schemas(),
                "Problem": PROBLEM_SCHEMA,
                "Commerce7Webhook": _commerce7_webhook_schema(),
            },
        },
    }
