"""Templates (jinja2, autoescaped) and the small formatters the pages use."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from services.scheduler.console.access import can_act, session_key

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# No script at all, styles from our own static file, forms only to ourselves, never in
# a frame: what a page that can replay and purge messages should allow.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# The menu: (path, label).
NAV: tuple[tuple[str, str], ...] = (
    ("/console", "Overview"),
    ("/console/runs", "Runs"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/actions", "Provider actions"),
    ("/console/trace", "Trace"),
)

templates_key = web.AppKey("console_templates", jinja2.Environment)


def when(value: datetime | None) -> str:
    """``2026-12-02 14:05:46 UTC`` (whole seconds), ``—`` for None."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float | None) -> str:
    """``45 s``, ``3 min 12 s``, ``2 h 5 min``, ``3 d 4 h``; ``unknown`` for None."""
    if seconds is None:
        return "unknown"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def percent(value: float | None) -> str:
    return "unknown" if value is None else f"{value * 100:.0f} %"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {"when": when, "age": age, "percent": percent}
    return env


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """Render ``template`` with the session (``session``, ``can_act``) in its context."""
    env = request.app[templates_key]
    session = request.get(session_key)
    context.setdefault("flash", "")
    html = env.get_template(template).render(
        session=session, can_act=can_act(request), path=request.path, nav=NAV, **context
    )
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )
