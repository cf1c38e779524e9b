"""Who is calling: Shopify's HMAC signature, Commerce7's Basic auth, app API keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr


def shopify_hmac(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256`` for ``body``: base64 of HMAC-SHA256 keyed by the app's
    client secret over the raw body (WEBHOOKS.md §3, shopify.dev verify-deliveries)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_shopify_hmac(body: bytes, header: str | None, *secrets: str) -> bool:
    """True when ``header`` is the signature of ``body`` under one of ``secrets``.

    ``secrets`` are the current secret and, during a rotation, the previous one
    (Shopify signs with the old secret for up to an hour after the switch). Every
    non-empty secret is tried, each compared in constant time, so timing tells
    neither which one matched nor how close a forgery came. No non-empty secret
    verifies nothing: every request is refused rather than trusted.
    """
    keys = [s for s in secrets if s]
    if not keys or not header:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    ok = False
    for secret in keys:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        ok |= hmac.compare_digest(given, expected)
    return ok


def verify_basic_auth(header: str | None, username: str, *passwords: str) -> bool:
    """True when ``Authorization: Basic ...`` carries ``username`` and one of ``passwords``.

    ``passwords`` are the current password and, during a rotation, the previous one;
    empty ones never match. Every comparison runs, in constant time, whatever fails.
    """
    keys = [p for p in passwords if p]
    if not header or not header.startswith("Basic ") or not username or not keys:
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, pwd = decoded.partition(":")
    # Compare both halves every time so timing does not tell which one was wrong.
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_pwd = False
    for password in keys:
        ok_pwd |= hmac.compare_digest(pwd.encode(), password.encode())
    return bool(sep) and ok_user and ok_pwd


def api_key_name(header: str | None, keys: Mapping[str, SecretStr]) -> str | None:
    """The name of the API key in ``Authorization: Bearer <key>``, or None.

    Every configured key is compared (constant time each), so timing does not tell
    which key came close.
    """
    if not header or not header.startswith("Bearer "):
        return None
    given = header[7:].strip().encode()
    found = None
    for name, key in keys.items():
        secret = key.get_secret_value().encode()
        if secret and hmac.compare_digest(given, secret):
            found = name
    return found
