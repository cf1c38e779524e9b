"""Who may use the admin API: one bearer token per role.

::

    viewer    reads: jobs, runs, RepCard logs, traces, dead-letter listings
    operator  viewer + acts: trigger jobs, replay dead letters, retry actions
    admin     operator + the heavy operations (a full RepCard pull)

Tokens come from settings: ``CRMSYNC_ADMIN_TOKEN`` (role ``admin``, also what the CLI
sends), ``CRMSYNC_ADMIN_OPERATOR_TOKEN`` and ``CRMSYNC_ADMIN_VIEWER_TOKEN``. An unset
token grants nothing. Every configured token is compared in constant time on every
request, so timing tells nothing about which one came close.

:func:`bearer_auth` (a middleware) authenticates every ``/v1`` request and stores the
caller's :class:`Role` under :data:`role_key`; a route that needs more than reading
calls :func:`require_role` first: 401 without a valid token, 403 with a token whose
role is too low (problem+json either way).
"""

from __future__ import annotations

import enum
import hmac

from aiohttp import web

from services.scheduler.keys import scheduler_key
from shared.problems import Handler, Problem
from shared.settings import SchedulerSettings

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="crmsync-admin"'}


class Role(enum.IntEnum):
    """Admin roles, ordered: a higher role may do all a lower one may."""

    viewer = 1
    operator = 2
    admin = 3


# Where the middleware leaves the authenticated caller's role on the request.
role_key = web.RequestKey("crmsync_admin_role", Role)


def role_tokens(settings: SchedulerSettings) -> list[tuple[Role, bytes]]:
    """The configured (role, token) pairs; empty tokens are left out."""
    pairs = [
        (Role.admin, settings.admin_token.get_secret_value()),
        (Role.operator, settings.admin_operator_token.get_secret_value()),
        (Role.viewer, settings.admin_viewer_token.get_secret_value()),
    ]
    return [(role, token.encode()) for role, token in pairs if token]


def role_of(authorization: str, tokens: list[tuple[Role, bytes]]) -> Role | None:
    """The role whose token ``Authorization: Bearer <token>`` carries, or None.

    Compares against every token, each in constant time; the highest match wins (two
    roles configured with the same token act as the higher one).
    """
    scheme, _, token = authorization.partition(" ")
    given = token.strip().encode()
    found: Role | None = None
    for role, expected in tokens:
        if hmac.compare_digest(given, expected) and (found is None or role > found):
            found = role
    return found if scheme.lower() == "bearer" else None


def is_admin_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse ``/v1`` requests without a valid role token (401); others pass."""
    if is_admin_path(request.path):
        settings = request.app[scheduler_key].settings
        tokens = role_tokens(settings)
        role = role_of(request.headers.get("Authorization", ""), tokens)
        if role is None:
            detail = (
                "the admin API has no token configured (CRMSYNC_ADMIN_TOKEN,"
                " CRMSYNC_ADMIN_OPERATOR_TOKEN, CRMSYNC_ADMIN_VIEWER_TOKEN)"
                if not tokens
                else "a valid bearer token is required"
            )
            raise Problem(401, "Unauthorized", detail, headers=_UNAUTHORIZED_HEADERS)
        request[role_key] = role
    return await handler(request)


def require_role(request: web.Request, needed: Role) -> Role:
    """The caller's role if it is at least ``needed``.

    Raises:
        Problem: 401 if the request was not authenticated (not under ``/v1``), 403
            naming the role needed and the caller's.
    """
    role: Role | None = request.get(role_key)
    if role is None:
        raise Problem(401, "Unauthorized", "a valid bearer token is required",
                      headers=_UNAUTHORIZED_HEADERS)  # fmt: skip
    if role < needed:
        raise Problem(
            403,
            "Forbidden",
            f"this needs the {needed.name} role; the token given has the {role.name} role",
        )
    return role
