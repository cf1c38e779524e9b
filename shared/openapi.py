"""Pieces every crmsync OpenAPI document shares: the RFC 9457 problem schema, problem
responses, and the operational endpoints (``/healthz``, ``/readyz``, ``/metrics``)."""

from __future__ import annotations

from typing import Any

from shared.readiness import READINESS_SCHEMA

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "parameter": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
    "required": ["type", "title", "status"],
}


def problem(description: str) -> dict[str, Any]:
    """A response whose body is a problem document."""
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM_REF}},
    }


def operational_paths(ready_means: str) -> dict[str, Any]:
    """``/healthz``, ``/readyz`` (``ready_means``: what it checks) and ``/metrics``."""
    return {
        "/healthz": {
            "get": {"summary": "Process is up", "responses": {"200": {"description": "ok"}}}
        },
        "/readyz": {
            "get": {
                "summary": f"{ready_means} reachable, every background task running",
                "responses": {
                    "200": {
                        "description": "ready: each component's state",
                        "content": {"application/json": {"schema": READINESS_SCHEMA}},
                    },
                    "503": {
                        "description": f"not ready ({ready_means} unreachable, or a "
                        "background task restarting): a problem with each component's state",
                        "content": {
                            "application/problem+json": {
                                "schema": {"allOf": [PROBLEM_REF, READINESS_SCHEMA]}
                            }
                        },
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text format"}},
            }
        },
    }
