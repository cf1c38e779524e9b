"""``GET /v1/doctor``: ``crmsync doctor``'s report over the admin API (``operator`` role).

Always 200 with the report (``{"ok": bool, "checks": [...]}``, as ``crmsync doctor
--json`` prints it); ``ok: false`` when a check failed. The checks read the settings
of every service from this process's environment (:meth:`DoctorInputs.from_environment`
with the scheduler's own settings) unless the app was built with explicit inputs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.scheduler.auth import Role, require_role
from services.scheduler.keys import scheduler_key
from shared.doctor import DoctorInputs, run_doctor
from shared.openapi import problem

doctor_inputs_key = web.AppKey("crmsync_doctor_inputs", DoctorInputs)


async def doctor(request: web.Request) -> web.Response:
    require_role(request, Role.operator)
    inputs = request.app.get(doctor_inputs_key)
    if inputs is None:
        inputs = DoctorInputs.from_environment(request.app[scheduler_key].settings)
    report = await run_doctor(inputs)
    return web.json_response(report.to_json())


def setup_doctor(app: web.Application, inputs: DoctorInputs | None = None) -> None:
    """Add the route; ``inputs`` fixes the settings it checks (tests)."""
    if inputs is not None:
        app[doctor_inputs_key] = inputs
    app.router.add_get("/v1/doctor", doctor)


def doctor_paths() -> dict[str, Any]:
    """The route's OpenAPI path item."""
    check = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "title": {"type": "string"},
            "status": {"enum": ["ok", "warn", "fail", "skip"]},
            "detail": {"type": "string"},
            "hint": {"type": "string"},
        },
        "required": ["name", "title", "status", "detail", "hint"],
    }
    report = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "checks": {"type": "array", "items": check}},
        "required": ["ok", "checks"],
    }
    return {
        "/v1/doctor": {
            "get": {
                "summary": "crmsync doctor: every go-live check, one item each",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "The report; `ok` is false when a check failed.",
                        "content": {"application/json": {"schema": report}},
                    },
                    "401": problem("Missing or wrong bearer token (any role's)."),
                    "403": problem("The token's role is too low (needs `operator`)."),
                },
            }
        }
    }
