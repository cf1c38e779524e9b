"""Who may use the console: the session cookie on every request, CSRF on every POST.

:func:`console_auth` (a middleware) guards every path under ``/console`` but the login
page and the static files:

- no valid session: a GET is sent to the login page, anything else gets 401;
- a POST whose form has no ``csrf`` field, or the wrong one: 403 problem+json, before
  any handler runs (the login form's own check is in :mod:`.login`);
- otherwise the session's role is stored under :data:`~services.scheduler.auth.role_key`,
  so an action calls :func:`~services.scheduler.auth.require_role` exactly as the admin
  API does (a ``viewer`` that posts anyway gets 403).
"""

from __future__ import annotations

import time
from urllib.parse import quote

from aiohttp import web

from services.scheduler.auth import Role, role_key, role_tokens
from services.scheduler.console.session import CSRF_FIELD, SESSION_COOKIE, Session, csrf_matches
from services.scheduler.console.session import read_session as _read_session
from services.scheduler.keys import scheduler_key
from shared.problems import Handler, Problem

PREFIX = "/console"
LOGIN_PATH = f"{PREFIX}/login"
STATIC_PREFIX = f"{PREFIX}/static/"

session_key = web.RequestKey("crmsync_console_session", Session)


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def current_session(request: web.Request) -> Session | None:
    """The request's valid session, or None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    settings = request.app[scheduler_key].settings
    return _read_session(cookie, role_tokens(settings), time.time())


def can_act(request: web.Request) -> bool:
    """True if the session may replay, retry, purge and trigger (operator and up)."""
    session = request.get(session_key)
    return session is not None and session.role >= Role.operator


@web.middleware
async def console_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Guard ``/console`` (see the module docstring); other paths pass untouched."""
    path = request.path
    if not is_console_path(path) or path == LOGIN_PATH or path.startswith(STATIC_PREFIX):
        return await handler(request)
    session = current_session(request)
    if session is None:
        if request.method in ("GET", "HEAD"):
            raise web.HTTPSeeOther(f"{LOGIN_PATH}?next={quote(request.path_qs, safe='')}")
        raise Problem(401, "Unauthorized", "log in to the console first")
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        given = form.get(CSRF_FIELD)
        if not isinstance(given, str) or not csrf_matches(session, given):
            raise Problem(
                403,
                "Forbidden",
                "the form's CSRF token is missing or wrong; reload the page and try again",
                errors=[{"parameter": CSRF_FIELD, "detail": "missing or wrong"}],
            )
    request[session_key] = session
    request[role_key] = session.role
    return await handler(request)
