"""The admin API (``/v1``): list jobs, trigger runs, read run history.

Every ``/v1`` request needs a role's bearer token (see :mod:`.auth`): reading needs
``viewer``, triggering a run ``operator``; errors are RFC 9457 problem documents. See
``openapi.py`` for the shapes, served at ``GET /openapi.json``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from pydantic import ValidationError

from services.scheduler.admin_ops import setup_ops_routes
from services.scheduler.auth import Role, require_role
from services.scheduler.history import (
    IdempotencyConflict,
    create_manual_run,
    get_run,
    last_runs,
    list_runs,
)
from services.scheduler.jobs import Job
from services.scheduler.keys import scheduler_key
from shared.problems import Problem, validation_problem

log = structlog.get_logger(__name__)

# Runs per page at most (GET .../runs?limit=).
MAX_LIMIT = 500
DEFAULT_LIMIT = 20
# Who asked, when the caller does not say (X-Triggered-By).
DEFAULT_TRIGGERED_BY = "admin-api"
# Longest X-Triggered-By and Idempotency-Key, in characters (printable ASCII).
MAX_TRIGGERED_BY = 200
MAX_IDEMPOTENCY_KEY = 255
# Run ids are Postgres bigint.
MAX_RUN_ID = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_json(row: asyncpg.Record) -> dict[str, Any]:
    """A ``job_runs`` row as the API shows it."""
    duration = None
    if row["started_at"] is not None and row["finished_at"] is not None:
        duration = round((row["finished_at"] - row["started_at"]).total_seconds(), 3)
    return {
        "id": row["id"],
        "job": row["job"],
        "tick": _iso(row["tick"]),
        "trigger": row["trigger"],
        "triggeredBy": row["triggered_by"],
        "params": row["params"],
        "status": row["status"],
        "attempts": row["attempts"],
        "createdAt": _iso(row["created_at"]),
        "startedAt": _iso(row["started_at"]),
        "finishedAt": _iso(row["finished_at"]),
        "durationSeconds": duration,
        "totals": row["totals"],
        "error": row["error"],
    }


def _job(request: web.Request) -> Job:
    name = request.match_info["name"]
    job = request.app[scheduler_key].jobs_by_name.get(name)
    if job is None:
        raise Problem(404, "Not Found", f"no job named {name!r}")
    return job


def _int_query(
    request: web.Request, name: str, default: int | None, lo: int, hi: int
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    # Plain decimal digits only: int() would also take "1_000", " 5" and other scripts' digits.
    value = int(raw) if _INTEGER.fullmatch(raw) and len(raw) <= 20 else lo - 1
    if not lo <= value <= hi:
        raise Problem(
            422,
            "Unprocessable Content",
            f"{name} must be an integer from {lo} to {hi}",
            errors=[{"parameter": name, "detail": f"an integer from {lo} to {hi}"}],
        )
    return value


async def list_jobs(request: web.Request) -> web.Response:
    scheduler = request.app[scheduler_key]
    now = scheduler.clock.now()
    last = await last_runs(scheduler.pool, [j.name for j in scheduler.jobs])
    jobs = []
    for job in scheduler.jobs:
        jobs.append(
            {
                "name": job.name,
                "description": job.description,
                "enabled": job.enabled,
                "schedule": {"cron": job.cron, "timezone": job.timezone.key},
                "graceSeconds": job.grace_s,
                "nextTick": job.next_tick(now).isoformat() if job.enabled else None,
                "lastRun": run_json(last[job.name]) if job.name in last else None,
                "eventType": job.event_type,
                "queue": job.queue.name,
                "parameters": job.params.model_json_schema(by_alias=True),
            }
        )
    return web.json_response({"jobs": jobs})


async def job_runs(request: web.Request) -> web.Response:
    job = _job(request)
    limit = _int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before = _int_query(request, "before", None, 1, MAX_RUN_ID)
    assert limit is not None
    pool = request.app[scheduler_key].pool
    rows = await list_runs(pool, job=job.name, limit=limit, before=before)
    return web.json_response({"runs": [run_json(r) for r in rows]})


async def all_runs(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before = _int_query(request, "before", None, 1, MAX_RUN_ID)
    assert limit is not None
    rows = await list_runs(request.app[scheduler_key].pool, job=None, limit=limit, before=before)
    return web.json_response({"runs": [run_json(r) for r in rows]})


def _text_header(request: web.Request, name: str, max_length: int) -> str:
    """A header of printable ASCII, at most ``max_length`` characters, stripped.

    Raises:
        Problem: 422 naming the header.
    """
    value = request.headers.get(name, "")
    if len(value) > max_length or not _PRINTABLE_ASCII.fullmatch(value):
        detail = f"at most {max_length} printable ASCII characters"
        raise Problem(
            422,
            "Unprocessable Content",
            f"{name}: {detail}",
            errors=[{"parameter": name, "detail": detail}],
        )
    return value.strip()


async def _params_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Problem(400, "Bad Request", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Problem(400, "Bad Request", "the body must be a JSON object of parameters")
    return body


async def trigger_run(request: web.Request) -> web.Response:
    """``POST /v1/jobs/{name}/runs``: 202 ``{"runId", "status": "scheduled"}``."""
    require_role(request, Role.operator)
    scheduler = request.app[scheduler_key]
    job = _job(request)
    if not job.enabled:
        raise Problem(409, "Conflict", f"job {job.name!r} is disabled in the settings")
    body = await _params_body(request)
    try:
        params = job.params.model_validate(body)
    except ValidationError as exc:
        raise validation_problem(exc) from exc
    who = _text_header(request, "X-Triggered-By", MAX_TRIGGERED_BY) or DEFAULT_TRIGGERED_BY
    key = _text_header(request, "Idempotency-Key", MAX_IDEMPOTENCY_KEY) or None
    try:
        run = await create_manual_run(
            scheduler.pool,
            job=job.name,
            params=params.model_dump(mode="json", by_alias=True),
            triggered_by=who,
            idempotency_key=key,
            now=scheduler.clock.now(),
            source=scheduler.settings.source,
        )
    except IdempotencyConflict as exc:
        # The key is bound to a run with other parameters: a conflict with that run.
        raise Problem(
            409, "Conflict", str(exc), errors=[{"parameter": "Idempotency-Key", "detail": str(exc)}]
        ) from exc
    location = f"/v1/runs/{run.run_id}"
    status = "scheduled"
    if run.created:
        log.info("run.triggered", job=job.name, run_id=run.run_id, triggered_by=who)
    else:  # the same Idempotency-Key again: the run as it stands now
        existing = await get_run(scheduler.pool, run.run_id)
        status = existing["status"] if existing is not None else status
    return web.json_response(
        {"runId": run.run_id, "status": status, "location": location},
        status=202,
        headers={"Location": location},
    )


async def one_run(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    run_id = int(raw) if _INTEGER.fullmatch(raw) and len(raw) <= 20 else 0
    exists = 1 <= run_id <= MAX_RUN_ID
    row = await get_run(request.app[scheduler_key].pool, run_id) if exists else None
    if row is None:
        raise Problem(404, "Not Found", f"no run {request.match_info['id']}")
    return web.json_response(run_json(row))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{name}/runs", job_runs)
    app.router.add_post("/v1/jobs/{name}/runs", trigger_run)
    app.router.add_get("/v1/runs", all_runs)
    app.router.add_get("/v1/runs/{id}", one_run)
    setup_ops_routes(app)
