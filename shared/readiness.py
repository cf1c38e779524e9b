"""``/readyz``: each component's state as JSON, 503 while a required one is not running.

Every component is a supervised task (:mod:`shared.supervisor`): ``postgres`` (the
pool, probed), ``broker`` (connection and topology), and the service's own
(``outbox-relay``, ``consumers``, ``ticks``). Ready, 200 ``application/json``::

    {"ready": true, "service": "syncer", "components": {"postgres": {...}, ...}}

Not ready, 503 ``application/problem+json`` (RFC 9457 with the same members added)::

    {"type": "about:blank", "title": "Service Unavailable", "status": 503,
     "detail": "broker restarting: TopologyMismatchError: queue syncer.orders exists with ...",
     "ready": false, "service": "syncer",
     "components": {
        "postgres": {"state": "running", "required": true, "since": "...", "restarts": 0,
                     "failures": 0, "last_error": null, "last_failure_at": null},
        "broker": {"state": "restarting", ..., "restarts": 4, "failures": 4,
                   "last_error": "TopologyMismatchError: queue syncer.orders exists with ..."}}}

``/healthz`` stays a plain 200 (liveness): a service waiting for Postgres or RabbitMQ is
alive, and restarting it would not help.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from shared.problems import PROBLEM_JSON
from shared.supervisor import Supervisor, TaskState

_COMPONENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": [s.value for s in TaskState]},
        "required": {"type": "boolean"},
        "since": {"type": "string", "format": "date-time"},
        "restarts": {"type": "integer", "minimum": 0},
        "failures": {"type": "integer", "minimum": 0},
        "last_error": {"type": ["string", "null"]},
        "last_failure_at": {"type": ["string", "null"]},
    },
    "required": ["state", "required", "since", "restarts", "failures", "last_error"],
}

# The members /readyz always has (200 body; added to the 503 problem), for OpenAPI.
READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ready": {"type": "boolean"},
        "service": {"type": "string"},
        "components": {"type": "object", "additionalProperties": _COMPONENT_SCHEMA},
    },
    "required": ["ready", "service", "components"],
}


def readiness(supervisor: Supervisor, service: str) -> dict[str, Any]:
    """``{"ready": ..., "service": ..., "components": ...}`` now, plus ``detail``
    (which required components are not running, and why) when not ready."""
    components = supervisor.snapshot()
    body: dict[str, Any] = {"ready": supervisor.ready, "service": service}
    if not body["ready"]:
        waiting = [
            f"{name} {c['state']}" + (f": {c['last_error']}" if c["last_error"] else "")
            for name, c in components.items()
            if c["required"] and c["state"] != TaskState.RUNNING.value
        ]
        body["detail"] = "; ".join(waiting) or "starting"
    body["components"] = components
    return body


def readyz_response(supervisor: Supervisor, service: str) -> web.Response:
    """``/readyz`` as an aiohttp response: 200 JSON, or a 503 problem document."""
    body = readiness(supervisor, service)
    if body["ready"]:
        return web.json_response(body, headers={"Cache-Control": "no-store"})
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503}
    return web.Response(
        status=503,
        body=json.dumps({**problem, **body}).encode(),
        content_type=PROBLEM_JSON,
        headers={"Cache-Control": "no-store"},
    )
