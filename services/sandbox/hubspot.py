"""The HubSpot CRM API subset crmsync uses: v3 objects and v4 associations, with state.

``http://HOST:PORT/hubspot`` stands in for ``https://api.hubapi.com`` (API.md §1). Every
request needs ``Authorization: Bearer <ProviderSettings.hubspot_access_token>``, else 401
``INVALID_AUTHENTICATION``. Status codes and bodies follow API.md §2-§9:

- ``POST /hubspot/crm/v3/objects/{objectType}`` -> 201 record; 409 ``CONFLICT`` on a
  duplicate unique value (API.md §3.1).
- ``.../batch/create`` -> 201 / 207. Partial success needs a unique ``objectWriteTraceId``
  on every input; without, one failing input fails the call and nothing is created
  (API.md §3.2, "our reading" [unverified]). ``.../batch/update`` (by id, or by a unique
  ``idProperty``), ``.../batch/upsert`` (``idProperty`` required and unique; results carry
  ``new``), ``.../batch/read`` (unknown ids: one ``OBJECT_NOT_FOUND`` error, ids in
  ``context``) -> 200 / 207. More than 100 inputs -> 400 ``VALIDATION_ERROR``.
- ``.../search`` -> 200 (:mod:`services.sandbox.hubspot_search`).
- ``POST /hubspot/crm/v4/associations/{from}/{to}/batch/create`` -> 201 / 207,
  ``.../batch/associate/default`` -> 200 (errors in the body), ``.../batch/read`` ->
  200 / 207 (API.md §5). Associating twice is harmless.

A failed input's error names it in ``context``: ``{"objectWriteTraceId": [..]}`` when it
had one, ``{"ids": [..]}`` for ids (the keys are spec silent, API.md §2.3 [unverified]).
Property values must be JSON strings (or null, which clears): stricter than HubSpot,
to catch a client that sends numbers. State, rate limits and control routes:
:mod:`services.sandbox.hubspot_control`, :mod:`services.sandbox.hubspot_limits`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.sandbox import hubspot_control, hubspot_v3, hubspot_v4
from services.sandbox.control import on_reset, settings_key
from services.sandbox.faults import register_provider
from services.sandbox.hubspot_api import HubSpotError, error_body
from services.sandbox.hubspot_control import HubSpotState, hubspot_key
from services.sandbox.hubspot_limits import rate_limit_body
from services.sandbox.hubspot_objects import HubSpotStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# HubSpot's answer to a request without valid credentials.
_NO_AUTH = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
    "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


def hubspot_error_body(status: int) -> dict[str, Any]:
    """The fault layer's HubSpot bodies: 429 as a ten-secondly limit (API.md §9), else §2.4."""
    return rate_limit_body("TEN_SECONDLY_ROLLING") if status == 429 else error_body(status)


def _exempt(path: str) -> bool:
    # Search and the v4 association batches are exempt from the ten-secondly limit (§5, §9).
    return path.endswith("/search") or path.startswith("/hubspot/crm/v4/associations/")


@web.middleware
async def hubspot_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the call, check the token, apply the rate limits, render HubSpot errors."""
    if not request.path.startswith("/hubspot/"):
        return await handler(request)
    state = request.app[hubspot_key]
    state.stats.calls[f"{request.method} {request.path.removeprefix('/hubspot')}"] += 1
    expected = f"Bearer {request.app[settings_key].hubspot_access_token.get_secret_value()}"
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return HubSpotError(401, _NO_AUTH).response()
    verdict = state.limits.admit(time.monotonic(), exempt=_exempt(request.path))
    if verdict.refused is not None:
        state.stats.rate_limited[verdict.refused] += 1
        body = rate_limit_body(verdict.refused)
        return web.json_response(body, status=429, headers=verdict.headers)
    try:
        response = await handler(request)
    except HubSpotError as exc:
        response = exc.response()
    except web.HTTPException as exc:  # no such route or method
        response = web.json_response(error_body(exc.status, exc.reason), status=exc.status)
    response.headers.update(verdict.headers)
    return response


def setup(app: web.Application) -> None:
    """Add the HubSpot routes, state, reset, fault body and middleware. Needs
    ``faults.setup`` and ``control`` settings first. The custom object types of
    ``ProviderSettings`` get their default unique properties: ``booking_ref`` for
    bookings, ``exam_ref`` for mock exams (and ``email`` for contacts)."""
    settings = app[settings_key]
    unique = {
        "0-1": {"email"},
        settings.hubspot_booking_object_type: {"booking_ref"},
        settings.hubspot_mock_exam_object_type: {"exam_ref"},
    }
    state = HubSpotState(HubSpotStore(default_unique=unique))
    app[hubspot_key] = state
    on_reset(app, state.reset)
    register_provider(app, "hubspot", hubspot_error_body)
    app.middlewares.append(hubspot_middleware)
    hubspot_v3.add_routes(app)
    hubspot_v4.add_routes(app)
    hubspot_control.add_routes(app)
