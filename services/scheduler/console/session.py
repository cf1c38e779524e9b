"""Console logins: a signed session cookie per role token, and CSRF tokens.

The cookie never holds the token. It holds ``role.expiry.nonce`` and an HMAC-SHA256 of
that text keyed by the role's *current* token (:func:`services.scheduler.auth.role_tokens`):

- every replica can check it without shared state (the same settings, the same key);
- rotating a role's token ends that role's sessions at once (the MAC no longer checks);
- it is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
  sends it) and ``Path=/console``; ``Secure`` when the request came over HTTPS.

Every POST under ``/console`` carries a CSRF token in the form field ``csrf``
(:data:`CSRF_FIELD`): an HMAC of the session's nonce, so it is worth nothing in another
session. The login form, which has no session yet, uses a double-submit cookie
(:data:`LOGIN_CSRF_COOKIE`). A logout only clears the cookie: a copied cookie stays
valid until it expires (``console_session_ttl_s``) or the token is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from services.scheduler.auth import Role

SESSION_COOKIE = "crmsync_console"
LOGIN_CSRF_COOKIE = "crmsync_console_login"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
# Random bytes in a session nonce and in a login CSRF token (256 bits).
_NONCE_BYTES = 32


@dataclass(frozen=True)
class Session:
    """A logged-in console user.

    Attributes:
        role: what the token given at login may do.
        expires_at: Unix seconds.
        nonce: random, per login; the CSRF token derives from it.
        csrf: the CSRF token every form of this session carries.
    """

    role: Role
    expires_at: int
    nonce: str
    csrf: str


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _csrf(key: bytes, nonce: str) -> str:
    return _mac(key, f"csrf:{nonce}")


def new_session(role: Role, key: bytes, now: float, ttl_s: float) -> tuple[Session, str]:
    """A new session of ``role`` and its cookie value (``role.expiry.nonce.mac``).

    Args:
        role: the role of the token given at login.
        key: that role's token (the MAC key).
        now: Unix seconds.
        ttl_s: how long the session lasts, in seconds.
    """
    nonce = secrets.token_urlsafe(_NONCE_BYTES)
    expires_at = int(now + ttl_s)
    text = f"{role.name}.{expires_at}.{nonce}"
    session = Session(role, expires_at, nonce, _csrf(key, nonce))
    return session, f"{text}.{_mac(key, f'session:{text}')}"


def read_session(cookie: str, tokens: list[tuple[Role, bytes]], now: float) -> Session | None:
    """The session ``cookie`` holds, or None (malformed, forged, expired, or signed with
    a token that is no longer configured)."""
    parts = cookie.split(".")
    if len(parts) != 4:
        return None
    role_name, expiry, nonce, mac = parts
    if role_name not in Role.__members__ or not expiry.isdigit():
        return None
    role = Role[role_name]
    text = f"{role_name}.{expiry}.{nonce}"
    for token_role, key in tokens:
        if token_role is role and hmac.compare_digest(mac, _mac(key, f"session:{text}")):
            if int(expiry) <= now:
                return None
            return Session(role, int(expiry), nonce, _csrf(key, nonce))
    return None


def csrf_matches(session: Session, given: str) -> bool:
    """True if ``given`` is this session's CSRF token (constant time)."""
    return hmac.compare_digest(session.csrf.encode(), given.encode())


def new_login_csrf() -> str:
    return secrets.token_urlsafe(_NONCE_BYTES)


def set_cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    max_age_s: int | None,
) -> None:
    """Set a console cookie: ``HttpOnly``, ``SameSite=Strict``, ``Path=/console``,
    ``Secure`` behind HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH)
