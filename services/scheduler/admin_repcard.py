"""``/v1/repcard/sync``: start a RepCard pull, read its log (W5).

- ``POST /v1/repcard/sync`` with :class:`~shared.jobs.RepCardSyncParams` as the body
  (``{"incremental": true, "startDate": "2026-11-01", "skipStatusLogs": true}``) ->
  202 ``{"runId", "status", "location"}``. An incremental or date-range pull needs the
  ``operator`` role; a full pull (``"incremental": false`` and no dates) ``admin``,
  as the seed restricts it to a super-admin. 403 problem+json for a lower role, 422
  naming the field for bad parameters, 409 when the job is disabled.
- ``GET /v1/repcard/sync[?runId=N]`` (``viewer``) -> ``{"run": <Run> | null,
  "entities": [<log row>...]}``: the run's seven ``repcard_sync_log`` rows (the latest
  ``repcard.sync`` run by default) and ``latest``, each entity's most recent log row
  of any run.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import ValidationError

from services.scheduler.auth import Role, require_role
from services.scheduler.history import create_manual_run, get_run
from services.scheduler.keys import scheduler_key
from shared.jobs import REPCARD_SYNC, RepCardSyncParams
from shared.openapi import problem
from shared.problems import Problem, validation_problem

_LOG_FIELDS = (
    "entity_type", "sync_type", "status", "started_at", "completed_at", "records_fetched",
    "records_inserted", "records_updated", "records_unchanged", "records_failed",
    "records_unlinked", "error_message", "from_date", "to_date", "requests", "pages_failed",
    "chunks", "chunks_done", "run_id",
)  # fmt: skip


def needed_role(params: RepCardSyncParams) -> Role:
    """``admin`` for a full pull, ``operator`` for an incremental or date-range one."""
    full = not params.incremental and params.start_date is None and params.end_date is None
    return Role.admin if full else Role.operator


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def log_json(row: asyncpg.Record) -> dict[str, Any]:
    """A ``repcard_sync_log`` row with camelCase keys, dates as ISO strings."""
    out: dict[str, Any] = {}
    for name in _LOG_FIELDS:
        value = row[name]
        out[_camel(name)] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


async def start_sync(request: web.Request) -> web.Response:
    require_role(request, Role.viewer)
    scheduler = request.app[scheduler_key]
    raw = await request.read()
    try:
        params = RepCardSyncParams.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise validation_problem(exc) from exc
    require_role(request, needed_role(params))
    job = scheduler.jobs_by_name.get(REPCARD_SYNC)
    if job is None or not job.enabled:
        raise Problem(409, "Conflict", f"job {REPCARD_SYNC!r} is disabled in the settings")
    run = await create_manual_run(
        scheduler.pool,
        job=REPCARD_SYNC,
        params=params.model_dump(mode="json", by_alias=True),
        triggered_by=request.headers.get("X-Triggered-By", "admin-api")[:200],
        idempotency_key=None,
        now=scheduler.clock.now(),
        source=scheduler.settings.source,
    )
    location = f"/v1/runs/{run.run_id}"
    return web.json_response(
        {"runId": run.run_id, "status": "scheduled", "location": location},
        status=202,
        headers={"Location": location},
    )


async def read_sync(request: web.Request) -> web.Response:
    from services.scheduler.admin import run_json

    require_role(request, Role.viewer)
    pool = request.app[scheduler_key].pool
    raw = request.query.get("runId")
    if raw is not None and not (raw.isdigit() and 1 <= int(raw) < 2**63):
        detail = "a positive integer run id"
        raise Problem(422, "Unprocessable Content", f"runId: {detail}",
                      errors=[{"parameter": "runId", "detail": detail}])  # fmt: skip
    run_id = int(raw) if raw is not None else await pool.fetchval(
        "SELECT max(id) FROM job_runs WHERE job = $1", REPCARD_SYNC
    )  # fmt: skip
    run = await get_run(pool, run_id) if run_id is not None else None
    if raw is not None and (run is None or run["job"] != REPCARD_SYNC):
        raise Problem(404, "Not Found", f"no repcard.sync run {raw}")
    rows = await pool.fetch(
        "SELECT * FROM repcard_sync_log WHERE run_id = $1 ORDER BY id", run_id or 0
    )
    latest = await pool.fetch(
        "SELECT DISTINCT ON (entity_type) * FROM repcard_sync_log "
        "WHERE status <> 'pending' ORDER BY entity_type, id DESC"
    )
    return web.json_response(
        {
            "run": run_json(run) if run is not None else None,
            "entities": [log_json(r) for r in rows],
            "latest": [log_json(r) for r in latest],
        }
    )


def setup_repcard(app: web.Application) -> None:
    """Add the two routes."""
    app.router.add_post("/v1/repcard/sync", start_sync)
    app.router.add_get("/v1/repcard/sync", read_sync)


def repcard_paths() -> dict[str, Any]:
    """The routes' OpenAPI path item."""
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    log_row = {"type": "object", "properties": {_camel(n): {} for n in _LOG_FIELDS}}
    body = {"$ref": "#/components/schemas/RepCardSyncParams"}
    return {
        "/v1/repcard/sync": {
            "post": {
                "summary": "Start a RepCard pull (full: admin; incremental or range: operator)",
                "security": secured,
                "requestBody": {"content": {"application/json": {"schema": body}}},
                "responses": {
                    "202": {"description": "The run was scheduled; poll its location."},
                    "401": problem("Missing or wrong bearer token."),
                    "403": problem("The role is too low (a full pull needs `admin`)."),
                    "409": problem("The repcard.sync job is disabled."),
                    "422": problem("Invalid parameters; `errors[].pointer` names each."),
                },
            },
            "get": {
                "summary": "A RepCard run's log rows per entity (the latest run by default)",
                "security": secured,
                "parameters": [
                    {"name": "runId", "in": "query", "schema": {"type": "integer", "minimum": 1}}
                ],
                "responses": {
                    "200": {
                        "description": "The run, its log rows, each entity's latest row.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "run": {},
                                        "entities": {"type": "array", "items": log_row},
                                        "latest": {"type": "array", "items": log_row},
                                    },
                                }
                            }
                        },
                    },
                    "401": problem("Missing or wrong bearer token."),
                    "404": problem("No repcard.sync run with that id."),
                    "422": problem("runId is not a run id."),
                },
            },
        }
    }
