"""OpenAPI paths of the operations routes (:mod:`.admin_ops`), merged into the admin
API's document by :func:`services.scheduler.openapi.openapi_document`."""

from __future__ import annotations

from typing import Any

from shared.openapi import problem
from shared.ops.actions import STATUSES
from shared.ops.trace import MAX_QUERY_CHARS

_MAX_IDS = 1000
_MAX_ID = 2**63 - 1
_UNAUTHORIZED = problem("Missing or wrong bearer token (any role's).")
_FORBIDDEN = problem("The token's role is too low for this operation (needs `operator`).")
_NO_QUEUE = problem("Not a crmsync dead queue (or RabbitMQ has no such queue).")
_BROKER_DOWN = problem("RabbitMQ is not connected; retry after `Retry-After` seconds.")
_BAD_BODY = problem("The body is not a JSON object.")
_INVALID = problem("Invalid fields; `errors[].pointer` (body) or `.parameter` names each.")
_TS = {"type": ["string", "null"], "format": "date-time"}
_QUEUE = {
    "name": "queue",
    "in": "path",
    "required": True,
    "description": "A dead queue without namespace (`syncer.orders.dead`); its work queue's "
    "name works too.",
    "schema": {"type": "string"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
}
_STR_IDS = {
    "type": "array",
    "items": {"type": "string"},
    "minItems": 1,
    "maxItems": _MAX_IDS,
    "description": "message ids (`messageId` of a dead letter)",
}
_DEAD_LETTER = {
    "type": "object",
    "properties": {
        "message_id": {"type": "string"},
        "event_id": {"type": ["string", "null"]},
        "type": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "first_error": {"type": ["string", "null"]},
        "time": _TS,
        "body_preview": {"type": "string"},
    },
    "required": ["message_id", "attempts", "body_preview"],
}
_SUMMARY = {
    "type": "object",
    "properties": {
        "queue": {"type": "string"},
        "work_queue": {"type": "string"},
        "count": {"type": "integer"},
        "oldest_age_s": {"type": ["number", "null"]},
        "reasons": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["queue", "work_queue", "count", "reasons"],
}
_ACTION = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "provider": {"type": "string"},
        "customer_id": {"type": "integer"},
        "email": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": list(STATUSES)},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "next_retry_at": _TS,
        "claimed_by": {"type": ["string", "null"]},
        "created_at": _TS,
        "updated_at": _TS,
        "completed_at": _TS,
    },
    "required": ["id", "kind", "provider", "status", "attempts"],
}
_TRACE = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "matched": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "time": {"type": "string", "format": "date-time"},
                    "kind": {"type": "string"},
                    "summary": {"type": "string"},
                    "details": {"type": "object"},
                },
                "required": ["time", "kind", "summary", "details"],
            },
        },
    },
    "required": ["query", "matched", "entries"],
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _list_of(key: str, item: dict[str, Any], description: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {key: {"type": "array", "items": item}}}
    return _json(description, {**schema, "required": [key]})


def ops_paths(secured: list[dict[str, list[str]]]) -> dict[str, Any]:
    """``/v1/dead-letters…``, ``/v1/actions…`` and ``/v1/trace``."""
    acting = {"401": _UNAUTHORIZED, "403": _FORBIDDEN, "400": _BAD_BODY, "422": _INVALID}
    replay_body = {
        "type": "object",
        "properties": {
            "ids": _STR_IDS,
            "all": {"type": "boolean", "description": "every message in the queue"},
            "dry_run": {"type": "boolean", "description": "say what would go; change nothing"},
        },
        "additionalProperties": False,
        "anyOf": [
            {"required": ["ids"]},
            {"required": ["all"], "properties": {"all": {"const": True}}},
        ],
    }
    retry_body = {
        "type": "object",
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": _MAX_ID},
                "minItems": 1,
                "maxItems": _MAX_IDS,
            },
            "all_failed": {"type": "boolean"},
        },
        "additionalProperties": False,
        "anyOf": [
            {"required": ["ids"]},
            {"required": ["all_failed"], "properties": {"all_failed": {"const": True}}},
        ],
    }
    return {
        "/v1/dead-letters": {
            "get": {
                "summary": "Every dead queue: count, oldest age, reasons (viewer)",
                "security": secured,
                "responses": {
                    "200": _list_of("queues", _SUMMARY, "The dead queues."),
                    "401": _UNAUTHORIZED,
                    "503": _BROKER_DOWN,
                },
            }
        },
        "/v1/dead-letters/{queue}": {
            "get": {
                "summary": "The first messages of a dead queue; they stay (viewer)",
                "security": secured,
                "parameters": [_QUEUE, _LIMIT],
                "responses": {
                    "200": _json(
                        "Messages, oldest first.",
                        {
                            "type": "object",
                            "properties": {
                                "queue": {"type": "string"},
                                "messages": {"type": "array", "items": _DEAD_LETTER},
                            },
                            "required": ["queue", "messages"],
                        },
                    ),
                    "401": _UNAUTHORIZED,
                    "404": _NO_QUEUE,
                    "422": _INVALID,
                    "503": _BROKER_DOWN,
                },
            }
        },
        "/v1/dead-letters/{queue}/replay": {
            "post": {
                "summary": "Back to the work queue, attempt 1, confirmed before the dead "
                "copy is acked (operator)",
                "security": secured,
                "parameters": [_QUEUE],
                "requestBody": _body(replay_body),
                "responses": {
                    "200": _json(
                        "What was replayed; `skipped`: ids not found.",
                        {
                            "type": "object",
                            "properties": {
                                "replayed": {"type": "array", "items": {"type": "string"}},
                                "skipped": {"type": "array", "items": {"type": "string"}},
                                "dry_run": {"type": "boolean"},
                            },
                            "required": ["replayed", "skipped", "dry_run"],
                        },
                    ),
                    **acting,
                    "404": _NO_QUEUE,
                    "503": _BROKER_DOWN,
                },
            }
        },
        "/v1/dead-letters/{queue}/purge": {
            "post": {
                "summary": "Drop messages for good (operator)",
                "security": secured,
                "parameters": [_QUEUE],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"ids": _STR_IDS},
                        "required": ["ids"],
                        "additionalProperties": False,
                    }
                ),
                "responses": {
                    "200": _json(
                        "How many were dropped.",
                        {
                            "type": "object",
                            "properties": {"purged": {"type": "integer"}},
                            "required": ["purged"],
                        },
                    ),
                    **acting,
                    "404": _NO_QUEUE,
                    "503": _BROKER_DOWN,
                },
            }
        },
        "/v1/actions": {
            "get": {
                "summary": "Provider actions, newest first (viewer)",
                "security": secured,
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(STATUSES)},
                    },
                    _LIMIT,
                ],
                "responses": {
                    "200": _list_of("actions", _ACTION, "The actions."),
                    "401": _UNAUTHORIZED,
                    "422": _INVALID,
                },
            }
        },
        "/v1/actions/retry": {
            "post": {
                "summary": "Failed actions back to pending, queued through the outbox (operator)",
                "security": secured,
                "requestBody": _body(retry_body),
                "responses": {
                    "200": _list_of("retried", _ACTION, "The actions retried (not failed: left)."),
                    **acting,
                },
            }
        },
        "/v1/trace": {
            "get": {
                "summary": "One record's story across webhooks, handlers, rows, providers "
                "and runs (viewer)",
                "security": secured,
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "required": True,
                        "description": "an email, customer id, order id, profile id, "
                        "student id or event id",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_QUERY_CHARS,
                            "pattern": "^[^\\u0000]*$",
                        },
                    }
                ],
                "responses": {
                    "200": _json("Entries, oldest first.", _TRACE),
                    "401": _UNAUTHORIZED,
                    "422": _INVALID,
                },
            }
        },
    }
