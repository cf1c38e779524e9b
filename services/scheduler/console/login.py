"""``/console/login`` and ``/console/logout``.

Log in with one of the admin API's role tokens (``CRMSYNC_ADMIN_TOKEN``,
``CRMSYNC_ADMIN_OPERATOR_TOKEN``, ``CRMSYNC_ADMIN_VIEWER_TOKEN``); the session cookie
then carries the role, never the token (:mod:`.session`). The login form is protected
by a double-submit CSRF cookie, since there is no session to bind a token to yet.
"""

from __future__ import annotations

import hmac
import time

from aiohttp import web

from services.scheduler.auth import role_of, role_tokens
from services.scheduler.console.access import LOGIN_PATH, PREFIX, current_session
from services.scheduler.console.render import page
from services.scheduler.console.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    new_login_csrf,
    new_session,
    set_cookie,
)
from services.scheduler.keys import scheduler_key
from shared.problems import Problem

# How long the login form's CSRF cookie lasts, in seconds.
LOGIN_FORM_TTL_S = 3600


def _next(raw: object) -> str:
    """Where to go after logging in: a path inside the console only (no open redirect)."""
    if isinstance(raw, str) and raw.startswith(PREFIX) and "//" not in raw and "\\" not in raw:
        return raw
    return PREFIX


def _form(
    request: web.Request, status: int = 200, error: str = "", nxt: str = PREFIX
) -> web.Response:
    csrf = new_login_csrf()
    tokens = role_tokens(request.app[scheduler_key].settings)
    response = page(
        request, "login.html", status, csrf=csrf, error=error, next=nxt, configured=bool(tokens)
    )
    set_cookie(response, request, LOGIN_CSRF_COOKIE, csrf, LOGIN_FORM_TTL_S)
    return response


async def login_form(request: web.Request) -> web.Response:
    if current_session(request) is not None:
        raise web.HTTPSeeOther(_next(request.query.get("next")))
    return _form(request, nxt=_next(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    """Check the form's CSRF token and the role token; 303 to the console or 401."""
    form = await request.post()
    given = form.get(CSRF_FIELD)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not isinstance(given, str) or not expected or not hmac.compare_digest(given, expected):
        raise Problem(
            403,
            "Forbidden",
            "the login form's CSRF token is missing or wrong; reload the login page",
            errors=[{"parameter": CSRF_FIELD, "detail": "missing or wrong"}],
        )
    token = form.get("token")
    settings = request.app[scheduler_key].settings
    tokens = role_tokens(settings)
    nxt = _next(form.get("next"))
    role = role_of(f"Bearer {token}", tokens) if isinstance(token, str) and token else None
    if role is None:
        return _form(request, 401, "That token is not valid for this console.", nxt)
    # The highest role wins when two share a token; its own token is the MAC key.
    key = next(k for r, k in tokens if r is role)
    ttl_s = settings.console_session_ttl_s
    _, cookie = new_session(role, key, time.time(), ttl_s)
    response = web.HTTPSeeOther(nxt)
    set_cookie(response, request, SESSION_COOKIE, cookie, int(ttl_s))
    clear_cookie(response, LOGIN_CSRF_COOKIE)
    raise response


async def logout(request: web.Request) -> web.Response:
    """Clear the session cookie (a POST with the session's CSRF token)."""
    response = web.HTTPSeeOther(LOGIN_PATH)
    clear_cookie(response, SESSION_COOKIE)
    raise response
