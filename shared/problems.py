"""HTTP errors as RFC 9457 problem details (``application/problem+json``).

Handlers raise :class:`Problem`; :func:`problem_middleware` renders it, and turns
aiohttp's own HTTP errors (404, 405, 413 ...) and unexpected exceptions into the same
shape, so every error a client sees has ``type``, ``title``, ``status``, ``detail``
and, for validation errors, ``errors: [{"pointer": "/customer/id", "detail": ...}]``
(JSON Pointers into the request body, as RFC 9457 §3's example does).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from shared.metrics import HTTP_REQUESTS

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer.

    Args:
        status: the HTTP status.
        title: short, the same for every occurrence of this kind of problem.
        detail: this occurrence, for a human.
        errors: per-field errors, each ``{"pointer": "/a/b", "detail": "..."}``.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def pointer(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a JSON Pointer (RFC 6901).

    A bad dictionary key is reported by pydantic at ``(..., key, "[key]")``: the
    pointer names the key's member, ``/credits/gold_stars``.
    """
    parts = [p for p in loc if p != "[key]"]
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validation_problem(exc: ValidationError, prefix: tuple[str, ...] = ()) -> Problem:
    """422 naming every failing field by its JSON Pointer."""
    errors = [
        {"pointer": pointer((*prefix, *err["loc"])), "detail": err["msg"]} for err in exc.errors()
    ]
    fields = ", ".join(e["pointer"] for e in errors[:5])
    return Problem(422, "Unprocessable Content", f"invalid fields: {fields}", errors=errors)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render errors as problem+json and count every answer by route and status.

    The ``route`` label is the matched route's template (``/v1/runs/{id}``), ``-`` when
    no route matched: never the raw path, which any caller could fill with new label
    values (and so new time series) without bound.
    """
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "-"
    try:
        response = await handler(request)
    except Problem as problem:
        response = problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = Problem(
            exc.status,
            exc.reason,
            exc.text if exc.text != exc.reason else None,
            headers={k: v for k, v in exc.headers.items() if k == "Allow"},
        ).response()
    except Exception:
        log.exception("http.unhandled_error", path=request.path)
        response = Problem(500, "Internal Server Error").response()
    HTTP_REQUESTS.labels(route, str(response.status)).inc()
    return response
