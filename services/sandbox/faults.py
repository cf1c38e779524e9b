"""Fault injection and the request log, for every provider prefix alike.

A middleware looks at requests whose first path segment names a provider
(``/shopify``, ``/commerce7``, ``/hubspot``, ``/repcard``), records each one and,
before the route runs, applies the faults registered for it: a delay, an error
status, or both.

``POST /_sandbox/faults`` registers a :class:`FaultSpec`; ``GET /_sandbox/requests``
reads the log (routes in :mod:`services.sandbox.control`). A log entry is
``{"provider", "method", "path", "status", "at", "fault"}``; ``fault`` is true when an
injected status answered (a delay alone is not one).

An error answer's body is the provider's own shape unless the fault gives ``body``;
each provider module registers its shape with :func:`register_provider`.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Builds the default error body of one provider for an HTTP status.
ErrorBody = Callable[[int], Any]

# First path segments the fault layer watches.
providers = ("shopify", "commerce7", "hubspot", "repcard")
# Enough for any test run; bounds memory when the sandbox runs for days.
max_logged_requests = 10_000


def generic_error_body(status: int) -> dict[str, Any]:
    """``{"status": s, "error": "<reason phrase>"}`` for providers with no known shape."""
    return {"status": status, "error": _reason(status)}


def hubspot_error_body(status: int) -> dict[str, Any]:
    """HubSpot's error shapes (reference/hubspot/API.md §8, §9).

    429: ``{"status": "error", "message": "You have reached your ten_secondly_rolling
    limit.", "errorType": "RATE_LIMIT", "correlationId", "policyName", "groupName"}``;
    others: ``{"status": "error", "message", "correlationId", "category"}``.
    """
    # Kept here until services/sandbox/hubspot.py exists and registers its own.
    if status == 429:
        return {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "TEN_SECONDLY_ROLLING",
            # The real groupName is not documented (API.md §9).
            "groupName": "sandbox-ten-secondly",
        }
    category = _HUBSPOT_CATEGORIES.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
    message = _reason(status)
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }


_HUBSPOT_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    409: "CONFLICT",
}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class FaultSpec(BaseModel):
    """The body of ``POST /_sandbox/faults``.

    Attributes:
        provider: ``shopify``, ``commerce7``, ``hubspot`` or ``repcard``.
        path: a regex searched in the request path (``/shopify/admin/...``); all if None.
        method: HTTP method, any case; all if None.
        status: the error status to answer with (400-599); None for latency only.
        count: apply to the next N matching requests, then retire; forever if None.
        rate: probability 0..1 that a matching request is hit; always if None.
        retry_after_s: sent as the ``Retry-After`` header (fractions allowed).
        latency_ms: delay before answering, in milliseconds.
        body: JSON sent instead of the provider's default error body.
    """

    model_config = ConfigDict(extra="forbid")

    provider: str
    path: str | None = None
    method: str | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    count: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, ge=0.0, le=1.0)
    retry_after_s: float | None = Field(default=None, ge=0.0)
    latency_ms: float | None = Field(default=None, ge=0.0)
    body: Any = None

    @field_validator("path")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                # pydantic reports ValueError as a validation error; re.error is not one.
                raise ValueError(f"invalid regex: {exc}") from exc
        return value


@dataclass
class Fault:
    """A registered fault: its spec, how many hits remain (None: unlimited), hits so far."""

    id: str
    spec: FaultSpec
    remaining: int | None
    hits: int = 0
    pattern: re.Pattern[str] | None = None

    def matches(self, provider: str, method: str, path: str) -> bool:
        spec = self.spec
        return (
            spec.provider == provider
            and (spec.method is None or spec.method.upper() == method)
            and (self.pattern is None or self.pattern.search(path) is not None)
            and (self.remaining is None or self.remaining > 0)
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.model_dump(), "count": self.remaining, "hits": self.hits}


@dataclass
class FaultStore:
    """Registered faults, the request log and each provider's default error body."""

    faults: list[Fault] = field(default_factory=list)
    requests: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=max_logged_requests)
    )
    # Every known prefix is faultable before its module exists; setups replace the shape.
    error_bodies: dict[str, ErrorBody] = field(
        default_factory=lambda: (
            dict.fromkeys(providers, generic_error_body) | {"hubspot": hubspot_error_body}
        )
    )
    # Tests may seed it for a repeatable ``rate``.
    rng: random.Random = field(default_factory=random.Random)

    def add(self, spec: FaultSpec) -> Fault:
        pattern = re.compile(spec.path) if spec.path is not None else None
        fault = Fault(uuid.uuid4().hex, spec, spec.count, pattern=pattern)
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self.faults)
        self.faults = [fault for fault in self.faults if fault.id != fault_id]
        return len(self.faults) != before

    def fire(self, provider: str, method: str, path: str) -> tuple[float, Fault | None]:
        """Pick what hits this request: total latency in ms, and the error fault if any.

        Every matching latency-only fault adds its delay; the first matching fault with a
        status answers, and later ones are not consumed.
        """
        latency_ms = 0.0
        for fault in self.faults:
            if not fault.matches(provider, method, path):
                continue
            if fault.spec.rate is not None and self.rng.random() >= fault.spec.rate:
                continue
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
            latency_ms += fault.spec.latency_ms or 0.0
            if fault.spec.status is not None:
                return latency_ms, fault
        return latency_ms, None

    def error_response(self, fault: Fault) -> web.Response:
        spec = fault.spec
        assert spec.status is not None
        if "body" in spec.model_fields_set:
            body = spec.body
        else:
            make_body: ErrorBody = self.error_bodies.get(spec.provider, generic_error_body)
            body = make_body(spec.status)
        headers = {}
        if spec.retry_after_s is not None:
            headers["Retry-After"] = f"{spec.retry_after_s:g}"
        return web.json_response(body, status=spec.status, headers=headers)

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()


faults_key = web.AppKey("sandbox_faults", FaultStore)


def register_provider(app: web.Application, provider: str, error_body: ErrorBody) -> None:
    """Route ``/{provider}/...`` through the fault layer, answering errors as ``error_body``."""
    app[faults_key].error_bodies[provider] = error_body


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log provider requests and apply their faults before the route runs."""
    store = request.app[faults_key]
    provider = request.path.split("/", 2)[1]
    if provider not in store.error_bodies:
        return await handler(request)
    entry: dict[str, Any] = {
        "provider": provider,
        "method": request.method,
        "path": request.path,
        "status": None,  # until answered
        "at": datetime.now(UTC).isoformat(),
        "fault": False,
    }
    store.requests.append(entry)
    latency_ms, fault = store.fire(provider, request.method, request.path)
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)
    if fault is not None:
        response = store.error_response(fault)
        entry.update(status=response.status, fault=True)
        _log_request(entry, fault_id=fault.id)
        return response
    try:
        answer = await handler(request)
    except web.HTTPException as exc:
        entry["status"] = exc.status
        _log_request(entry)
        raise
    except Exception:
        entry["status"] = 500  # what aiohttp answers for an unhandled error
        _log_request(entry)
        raise
    entry["status"] = answer.status
    _log_request(entry)
    return answer


def _log_request(entry: dict[str, Any], fault_id: str | None = None) -> None:
    """One line per provider request: ``sandbox.request provider=hubspot method=POST
    path=... status=207`` (``fault_id`` when an injected fault answered)."""
    fields = {k: entry[k] for k in ("provider", "method", "path", "status")}
    if fault_id is not None:
        log.info("sandbox.fault_injected", fault_id=fault_id, **fields)
    else:
        log.info("sandbox.request", **fields)


def setup(app: web.Application) -> None:
    """Add the fault store and its middleware.

    Call before any provider's ``setup``, so the middleware wraps every route and
    :func:`register_provider` finds the store. The ``/_sandbox/faults|requests``
    routes are :mod:`services.sandbox.control`'s.
    """
    app[faults_key] = FaultStore()
    app.middlewares.append(fault_middleware)
