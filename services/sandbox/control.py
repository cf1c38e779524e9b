"""Keys and helpers shared by the sandbox's modules, and the generic control routes.

Routes (for tests, not part of any provider's API):

- ``GET /healthz`` (and ``GET /_sandbox/health``) -> 200 ``{"status": "ok"}``
- ``POST /_sandbox/reset`` -> 200 ``{"reset": true}``: clears faults, the request log
  and the state of every module registered with :func:`on_reset`.
- ``POST /_sandbox/faults`` body :class:`~services.sandbox.faults.FaultSpec` ->
  201 ``{"id": "<hex>"}``; 422 ``{"error": "..."}`` when invalid.
- ``GET /_sandbox/faults`` -> ``{"faults": [{..spec.., "id", "count" (left), "hits"}]}``
- ``DELETE /_sandbox/faults`` (all), ``DELETE /_sandbox/faults/{id}`` -> 200 (404 unknown)
- ``GET /_sandbox/requests?provider=shopify`` -> ``{"requests": [{"provider", "method",
  "path", "status", "at", "fault"}]}``, oldest first
- ``DELETE /_sandbox/requests`` -> 200

Provider-specific control routes (``/_sandbox/shopify/...``) live in each provider's
module, so a new provider adds its own without touching this one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.sandbox.faults import FaultSpec, faults_key
from shared.settings import ProviderSettings

settings_key = web.AppKey("sandbox_provider_settings", ProviderSettings)
resetters_key: web.AppKey[list[Callable[[], None]]] = web.AppKey("sandbox_resetters")


def on_reset(app: web.Application, reset: Callable[[], None]) -> None:
    """Register ``reset`` to run on ``POST /_sandbox/reset``; safe in any setup order."""
    if resetters_key not in app:
        app[resetters_key] = []
    app[resetters_key].append(reset)


def control_error(status: int, message: str) -> web.Response:
    """The control API's own error shape: ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


def validation_message(exc: ValidationError) -> str:
    """``"field.path: problem; ..."`` for a control-API 422."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


async def read_json_object(request: web.Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def reset(request: web.Request) -> web.Response:
    request.app[faults_key].reset()
    for reset_one in request.app.get(resetters_key, []):
        reset_one()
    return web.json_response({"reset": True})


async def add_fault(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    if body is None:
        return control_error(400, "body must be a JSON object")
    try:
        spec = FaultSpec.model_validate(body)
    except ValidationError as exc:
        return control_error(422, validation_message(exc))
    store = request.app[faults_key]
    if spec.provider not in store.error_bodies:
        return control_error(422, f"unknown provider {spec.provider!r}")
    if spec.status is None and spec.latency_ms is None:
        return control_error(422, "give status, latency_ms or both")
    fault = store.add(spec)
    return web.json_response({"id": fault.id}, status=201)


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": [f.to_json() for f in request.app[faults_key].faults]})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[faults_key].faults.clear()
    return web.json_response({"deleted": True})


async def delete_fault(request: web.Request) -> web.Response:
    if not request.app[faults_key].remove(request.match_info["id"]):
        return control_error(404, "no such fault")
    return web.json_response({"deleted": True})


async def list_requests(request: web.Request) -> web.Response:
    provider = request.query.get("provider")
    entries = [
        entry
        for entry in request.app[faults_key].requests
        if provider is None or entry["provider"] == provider
    ]
    return web.json_response({"requests": entries})


async def clear_requests(request: web.Request) -> web.Response:
    request.app[faults_key].requests.clear()
    return web.json_response({"deleted": True})


def setup(app: web.Application) -> None:
    """Add the routes above; needs ``faults.setup`` first (the store they act on)."""
    if resetters_key not in app:
        app[resetters_key] = []
    app.router.add_get("/_sandbox/health", health)
    app.router.add_get("/healthz", health)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_post("/_sandbox/faults", add_fault)
    app.router.add_get("/_sandbox/faults", list_faults)
    app.router.add_delete("/_sandbox/faults", clear_faults)
    app.router.add_delete("/_sandbox/faults/{id}", delete_fault)
    app.router.add_get("/_sandbox/requests", list_requests)
    app.router.add_delete("/_sandbox/requests", clear_requests)
