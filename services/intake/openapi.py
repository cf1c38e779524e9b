"""Intake's OpenAPI 3.1 document, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from shared.messages.credits import BookingEvent, CreditsNotification
from shared.messages.profiles import LoginEvent
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
    for model in (CreditsNotification, BookingEvent, LoginEvent):
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


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


def openapi_document() -> dict[str, Any]:
    """The document; webhook shapes by hand, app events generated from their models.

    ``tests/intake/test_openapi.py`` checks it names every route.
    """
    webhook_errors = {
        "400": problem("Malformed JSON or a missing required header."),
        "401": problem("Bad signature or credentials."),
        "413": problem("Body over the size limit (1 MiB by default)."),
        "422": problem("Required fields missing; `errors[].pointer` names each."),
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
                    "orders/updated, orders/cancelled)",
                    "parameters": [
                        {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
                        for n in (
                            "X-Shopify-Hmac-Sha256",
                            "X-Shopify-Topic",
                            "X-Shopify-Webhook-Id",
                        )
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ShopifyOrder"}
                            }
                        },
                    },
                    "responses": {"200": _ACCEPTED, **webhook_errors},
                }
            },
            "/webhooks/commerce7": {
                "post": {
                    "summary": "Commerce7 webhook (Order Create / Update handled)",
                    "security": [{"basic": []}, {}],
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
                    "statusUrl. Never a 5xx because the CRM is slow. A profile crmsync "
                    "does not have (no login or booking seen yet) is a 404; it is not "
                    "created.",
                    "security": [{"apiKey": []}],
                    "parameters": [_path_param("profileId")],
                    "responses": {
                        "200": {"description": "The profile's packages, freshly synced."},
                        "202": {
                            "description": "Still syncing: follow `statusUrl` (also Location)."
                        },
                        "401": problem("Missing or unknown API key."),
                        "404": problem("No such profile."),
                        "503": problem("Broker unavailable."),
                    },
                }
            },
            "/v1/profiles/{profileId}/packages/sync/{requestId}": {
                "get": {
                    "summary": "Status of a package refresh (running, succeeded, failed)",
                    "security": [{"apiKey": []}],
                    "parameters": [_path_param("profileId"), _path_param("requestId")],
                    "responses": {
                        "200": {"description": "The request's status and, when done, its result."},
                        "401": problem("Missing or unknown API key."),
                        "404": problem("No such refresh for this profile."),
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
                "ShopifyOrder": {
                    "type": "object",
                    "description": "Shopify's Order resource as the webhook body "
                    "(the fields crmsync reads).",
                    "required": ["id", "currency", "total_price"],
                    "properties": {
                        "id": {"type": "integer"},
                        "currency": {"type": "string", "minLength": 3, "maxLength": 3},
                        "total_price": {"type": "string"},
                        "current_subtotal_price": {"type": "string"},
                        "financial_status": {"type": "string"},
                        "customer": {"type": "object", "required": ["id"]},
                    },
                },
                "Commerce7Webhook": {
                    "type": "object",
                    "required": ["object", "action", "tenantId"],
                    "properties": {
                        "object": {"type": "string"},
                        "action": {"type": "string"},
                        "tenantId": {"type": "string"},
                        "payload": {
                            "type": "object",
                            "required": ["id", "customerId", "paymentStatus", "subTotal", "total"],
                        },
                    },
                },
            },
        },
    }
