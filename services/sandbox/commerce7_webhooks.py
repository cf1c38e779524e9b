"""The Commerce7 sandbox's web hooks (reference/commerce7/NOTES.md §3 "Registering").

Same credentials, ``tenant`` header and error shape as the club membership routes
(:mod:`services.sandbox.commerce7`); web hooks are kept per tenant:

- ``POST /commerce7/v1/web-hook`` ``{object, action, url}`` -> 200 the web hook with its
  ``id``; a missing field, an unknown action or a URL that is not http(s) -> 422.
  A second identical hook is accepted, as nothing says Commerce7 refuses one: callers
  must list first (:mod:`shared.webhook_registration` does);
- ``GET /commerce7/v1/web-hook?limit=50&page=1`` -> ``{"webHooks": [...], "total": n}``;
- ``DELETE /commerce7/v1/web-hook/{id}`` -> 204, 404 when unknown.

Control: ``GET /_sandbox/commerce7/{tenant}/web-hooks`` -> ``{"webHooks": [...]}``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.sandbox.commerce7 import _error, _page_arg, _tenant_or_error, max_page_limit
from services.sandbox.control import on_reset, read_json_object

# Actions Commerce7 web hooks are seen with (NOTES.md §3, [3rd-party]).
ACTIONS = frozenset({"Create", "Update", "Delete", "Bulk Update"})


@dataclass
class WebHooksState:
    """Web hooks by tenant, then by id, in creation order."""

    hooks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def tenant(self, tenant: str) -> dict[str, dict[str, Any]]:
        return self.hooks.setdefault(tenant, {})

    def reset(self) -> None:
        self.hooks.clear()


web_hooks_key = web.AppKey("sandbox_commerce7_web_hooks", WebHooksState)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def create_web_hook(request: web.Request) -> web.Response:
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    body = await read_json_object(request)
    if body is None:
        return _error(400, "Body must be a JSON object")
    for name in ("object", "action", "url"):
        if not isinstance(body.get(name), str) or not body[name]:
            return _error(422, f"{name} is required")
    if body["action"] not in ACTIONS:
        return _error(422, f"action must be one of {sorted(ACTIONS)}")
    url = urlsplit(body["url"])
    if url.scheme not in ("http", "https") or not url.hostname:
        return _error(422, "url must be an http(s) URL")
    now = _now()
    hook = {
        "id": str(uuid.uuid4()),
        "object": body["object"],
        "action": body["action"],
        "url": body["url"],
        "createdAt": now,
        "updatedAt": now,
    }
    request.app[web_hooks_key].tenant(tenant)[hook["id"]] = hook
    return web.json_response(hook)


async def list_web_hooks(request: web.Request) -> web.Response:
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    limit = _page_arg(request, "limit", max_page_limit, max_page_limit)
    page = _page_arg(request, "page", 1, 1_000_000)
    if limit is None or page is None:
        return _error(422, f"limit must be 1..{max_page_limit} and page a positive integer")
    hooks = list(request.app[web_hooks_key].tenant(tenant).values())
    chunk = hooks[(page - 1) * limit : page * limit]
    return web.json_response({"webHooks": chunk, "total": len(hooks)})


async def delete_web_hook(request: web.Request) -> web.Response:
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    if request.app[web_hooks_key].tenant(tenant).pop(request.match_info["id"], None) is None:
        return _error(404, "Web hook not found")
    return web.Response(status=204)


async def control_web_hooks(request: web.Request) -> web.Response:
    hooks = request.app[web_hooks_key].tenant(request.match_info["tenant"])
    return web.json_response({"webHooks": list(hooks.values())})


def setup(app: web.Application) -> None:
    """Add the routes above (Commerce7's fault body is :mod:`.commerce7`'s)."""
    state = WebHooksState()
    app[web_hooks_key] = state
    on_reset(app, state.reset)
    app.router.add_post("/commerce7/v1/web-hook", create_web_hook)
    app.router.add_get("/commerce7/v1/web-hook", list_web_hooks)
    app.router.add_delete("/commerce7/v1/web-hook/{id}", delete_web_hook)
    app.router.add_get("/_sandbox/commerce7/{tenant}/web-hooks", control_web_hooks)
