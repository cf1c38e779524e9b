"""W1 endpoints for app backends: logins, and package refreshes on demand.

- ``POST /v1/events/login`` → 202 once published; login never waits for the CRM.
- ``POST /v1/profiles/{profileId}/packages/sync`` → 200 with the fresh packages when
  the sync finishes within ``CRMSYNC_REFRESH_WAIT_S`` (request/reply over RabbitMQ),
  else 202 with the request to follow: never a 5xx because the CRM is slow.
- ``GET /v1/profiles/{profileId}/packages/sync/{requestId}`` → that request's status.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from aiohttp import web

from services.intake.app_events import accepted, require_api_key
from services.intake.keys import replies_key, settings_key
from services.intake.publish import publish_or_503
from services.intake.webhooks.body import parse_body
from shared.errors import BrokerUnavailableError
from shared.events import CloudEvent
from shared.messages.profiles import (
    LOGIN,
    PACKAGES_REFRESH,
    PACKAGES_REFRESH_STATUS,
    LoginEvent,
    PackagesRefresh,
    RefreshStatusQuery,
)
from shared.messages.types import NO_CONTROL, utc_event_time
from shared.problems import Problem

# ``profileId`` in a path: what LoginEvent.profileId accepts.
PROFILE_ID_MAX = 200
_PROFILE_ID = re.compile(NO_CONTROL)
# A CloudEvent id (and AMQP ``message_id``, a short string) holds 255 bytes at most.
MAX_EVENT_ID_BYTES = 255


def _parameter_problem(name: str, detail: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        f"{name}: {detail}",
        errors=[{"parameter": name, "detail": detail}],
    )


def path_profile_id(request: web.Request) -> str:
    """``{profileId}``: 1 to 200 characters, no control characters.

    Raises:
        Problem: 422 naming the parameter.
    """
    value = request.match_info["profileId"]
    if not 1 <= len(value) <= PROFILE_ID_MAX or _PROFILE_ID.fullmatch(value) is None:
        raise _parameter_problem(
            "profileId", f"1 to {PROFILE_ID_MAX} characters, no control characters"
        )
    return value


def path_request_id(request: web.Request) -> str:
    """``{requestId}``: the UUID a refresh answered with (canonical lower-case form).

    Raises:
        Problem: 404 when it is not a UUID: no such request can exist.
    """
    value = request.match_info["requestId"]
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value.lower():
        raise Problem(404, "Not Found", "no such refresh for this profile")
    return str(parsed)


def login_event_id(caller: str, login: LoginEvent) -> str:
    """``<caller>:<idempotencyKey>``, or ``<caller>:login:<profile>:<time>`` without a key;
    hashed when longer than an AMQP short string allows."""
    key = login.idempotency_key or f"login:{login.profile_id}:{login.occurred_at.isoformat()}"
    event_id = f"{caller}:{key}"
    if len(event_id.encode()) > MAX_EVENT_ID_BYTES:
        event_id = f"{caller}:login:{hashlib.sha256(key.encode()).hexdigest()}"
    return event_id


async def login_event(request: web.Request) -> web.Response:
    """A profile logged in. Errors: 401, 400, 413, 422 (by JSON Pointer), 503."""
    caller = require_api_key(request)
    body = await request.read()
    login = parse_body(LoginEvent, body)
    event = CloudEvent.create(
        id=login_event_id(caller, login),
        type=LOGIN,
        source=f"urn:crmsync:app:{caller}",
        subject=login.profile_id,
        time=utc_event_time(login.occurred_at),
        data=body,
    )
    await publish_or_503(request, event)
    return accepted(event)


def _status_url(profile_id: str, request_id: str) -> str:
    return f"/v1/profiles/{profile_id}/packages/sync/{request_id}"


async def refresh_packages(request: web.Request) -> web.Response:
    """Sync one profile's packages now and answer with them, or 202 to follow.

    Errors: 401 no or unknown key; 422 a ``profileId`` that cannot be one (empty, over
    200 characters, control characters); 503 broker unavailable.
    """
    caller = require_api_key(request)
    profile_id = path_profile_id(request)
    request_id = str(uuid.uuid4())
    event = CloudEvent.create(
        id=request_id,
        type=PACKAGES_REFRESH,
        source=f"urn:crmsync:app:{caller}",
        subject=profile_id,
        data=PackagesRefresh(profile_id=profile_id),
    )
    wait_s = request.app[settings_key].refresh_wait_s
    try:
        answer = await request.app[replies_key].request(event, wait_s)
    except BrokerUnavailableError as exc:
        raise Problem(503, "Service Unavailable", "the message broker is unavailable; retry",
                      headers={"Retry-After": "5"}) from exc  # fmt: skip
    location = _status_url(profile_id, request_id)
    if answer is None:
        return web.json_response(
            {"status": "running", "requestId": request_id, "profileId": profile_id,
             "statusUrl": location},
            status=202, headers={"Location": location},
        )  # fmt: skip
    return web.json_response(json.loads(answer), headers={"Content-Location": location})


async def refresh_status(request: web.Request) -> web.Response:
    """The status of a refresh request: ``running``, ``succeeded`` (with the packages),
    ``failed`` (with the error). 404 for an unknown request; 503 if no syncer answers."""
    caller = require_api_key(request)
    query = RefreshStatusQuery(
        profile_id=path_profile_id(request), request_id=path_request_id(request)
    )
    event = CloudEvent.create(
        type=PACKAGES_REFRESH_STATUS, source=f"urn:crmsync:app:{caller}",
        subject=query.profile_id, data=query,
    )  # fmt: skip
    try:
        answer = await request.app[replies_key].request(
            event, request.app[settings_key].refresh_wait_s
        )
    except BrokerUnavailableError as exc:
        raise Problem(503, "Service Unavailable", "the message broker is unavailable") from exc
    if answer is None:
        raise Problem(503, "Service Unavailable", "no syncer answered in time; retry",
                      headers={"Retry-After": "5"})  # fmt: skip
    status = json.loads(answer)
    if status.get("status") == "unknown":
        raise Problem(404, "Not Found", f"no refresh {query.request_id} for this profile")
    return web.json_response(status)
