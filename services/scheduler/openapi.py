"""The admin API's OpenAPI 3.1 document, served at ``GET /openapi.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.scheduler.doctor import doctor_paths
from services.scheduler.jobs import Job
from services.scheduler.openapi_ops import ops_paths
from shared.openapi import PROBLEM_SCHEMA, operational_paths, problem

# Run ids are Postgres bigint.
MAX_RUN_ID = 2**63 - 1
_PRINTABLE_ASCII = r"^[\x20-\x7e]*$"

_RUN = {"$ref": "#/components/schemas/Run"}
_TS = {"type": ["string", "null"], "format": "date-time"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = problem("Missing or wrong bearer token (any role's).")
_FORBIDDEN = problem("The token's role is too low for this operation (needs `operator`).")
_NO_JOB = problem("No job of that name.")
_BAD_QUERY = problem("A query parameter out of range; `errors[].parameter` names it.")
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_RUN_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A run id; anything that cannot be one is a 404.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RUN_ID},
}
_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 20},
    },
    {
        "name": "before",
        "in": "query",
        "description": "Only runs with a smaller id: pass the last id of a page for the next.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RUN_ID},
    },
]
_RUNS = _json(
    "Runs, newest first.",
    {"type": "object", "properties": {"runs": {"type": "array", "items": _RUN}}},
)

_RUN_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "job": {"type": "string"},
        "tick": {
            "type": "string",
            "format": "date-time",
            "description": "UTC cron tick, or when a manual run was requested.",
        },
        "trigger": {"enum": ["schedule", "manual"]},
        "triggeredBy": {"type": ["string", "null"]},
        "params": {"type": "object"},
        "status": {"enum": ["scheduled", "running", "succeeded", "failed", "missed"]},
        "attempts": {"type": "integer"},
        "createdAt": _TS,
        "startedAt": _TS,
        "finishedAt": _TS,
        "durationSeconds": {"type": ["number", "null"]},
        "totals": {"type": "object", "description": "Counters the handler filled in."},
        "error": {"type": ["string", "null"]},
    },
    "required": ["id", "job", "tick", "trigger", "status", "params", "totals"],
}


def _job_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "enabled": {"type": "boolean"},
            "schedule": {
                "type": "object",
                "properties": {"cron": {"type": "string"}, "timezone": {"type": "string"}},
            },
            "graceSeconds": {"type": "number"},
            "nextTick": _TS,
            "lastRun": {"anyOf": [_RUN, {"type": "null"}]},
            "eventType": {"type": "string"},
            "queue": {"type": "string"},
            "parameters": {"type": "object", "description": "JSON Schema of its parameters."},
        },
    }


def _job_runs(
    secured: list[dict[str, list[str]]], parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "summary": "A job's runs, newest first",
        "security": secured,
        "parameters": parameters,
        "responses": {"200": _RUNS, "401": _UNAUTHORIZED, "404": _NO_JOB, "422": _BAD_QUERY},
    }


def _trigger(job: Job | None, secured: list[dict[str, list[str]]]) -> dict[str, Any]:
    """``POST /v1/jobs/<job>/runs``, with that job's parameters as the body; for
    ``job=None`` the templated path, whose names are not jobs (404)."""
    if job is None:
        summary = "Trigger a run of a job that does not exist: 404"
        description = "The jobs there are have a path of their own (`/v1/jobs/<job>/runs`)."
        body: dict[str, Any] = {"type": "object"}
        name: list[dict[str, Any]] = [_NAME]
    else:
        summary = f"Trigger a run of {job.name} now, with parameters"
        description = job.description
        body = {"$ref": f"#/components/schemas/{job.params.__name__}"}
        name = []
    return {
        "post": {
            "summary": summary,
            "description": description,
            "security": secured,
            "parameters": [
                *name,
                {
                    "name": "X-Triggered-By",
                    "in": "header",
                    "description": "Who asks (kept on the run; default admin-api).",
                    "schema": {"type": "string", "maxLength": 200, "pattern": _PRINTABLE_ASCII},
                },
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "The same key for the same job returns the same run.",
                    "schema": {"type": "string", "maxLength": 255, "pattern": _PRINTABLE_ASCII},
                },
            ],
            "requestBody": {
                "required": False,
                "description": "The job's parameters (empty = defaults).",
                "content": {"application/json": {"schema": body}},
            },
            "responses": {
                "202": {
                    **_json(
                        "Accepted: the run is scheduled; follow Location.",
                        {
                            "type": "object",
                            "properties": {
                                "runId": {"type": "integer"},
                                "status": {"type": "string"},
                                "location": {"type": "string"},
                            },
                            "required": ["runId", "status"],
                        },
                    ),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "400": problem("The body is not a JSON object."),
                "401": _UNAUTHORIZED,
                "403": _FORBIDDEN,
                "404": _NO_JOB,
                "409": problem(
                    "The job is disabled in the settings, or the Idempotency-Key was used "
                    "for a run with other parameters."
                ),
                "413": problem("Body over 64 KiB."),
                "422": problem(
                    "Invalid parameters (`errors[].pointer` names each field) or headers "
                    "(`errors[].parameter`)."
                ),
            },
        }
    }


def openapi_document(jobs: Sequence[Job]) -> dict[str, Any]:
    """The document for this cron table; checked by ``tests/scheduler/test_admin_api.py``."""
    params = {j.params.__name__: j.params.model_json_schema(by_alias=True) for j in jobs}
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crmsync scheduler admin API",
            "version": "1.0.0",
            "description": "Jobs, their schedules and run history; trigger a run with "
            "parameters. Every /v1 route needs `Authorization: Bearer <token>` of a role: "
            "`viewer` (CRMSYNC_ADMIN_VIEWER_TOKEN) reads, `operator` "
            "(CRMSYNC_ADMIN_OPERATOR_TOKEN) also triggers runs, `admin` "
            "(CRMSYNC_ADMIN_TOKEN) may do everything.",
        },
        "paths": {
            "/v1/jobs": {
                "get": {
                    "summary": "Every job: schedule, next tick, last run",
                    "security": secured,
                    "responses": {
                        "200": _json(
                            "The cron table.",
                            {
                                "type": "object",
                                "properties": {
                                    "jobs": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Job"},
                                    }
                                },
                            },
                        ),
                        "401": _UNAUTHORIZED,
                    },
                }
            },
            "/v1/jobs/{name}/runs": {
                "get": _job_runs(secured, [_NAME, *_PAGING]),
                # Each job has its own path below, with its parameters as the body.
                **_trigger(None, secured),
            },
            # One path per job, so each documents its own parameters as the body.
            **{
                f"/v1/jobs/{j.name}/runs": {
                    "get": _job_runs(secured, _PAGING),
                    **_trigger(j, secured),
                }
                for j in jobs
            },
            "/v1/runs": {
                "get": {
                    "summary": "Runs of every job, newest first",
                    "security": secured,
                    "parameters": _PAGING,
                    "responses": {"200": _RUNS, "401": _UNAUTHORIZED, "422": _BAD_QUERY},
                }
            },
            "/v1/runs/{id}": {
                "get": {
                    "summary": "One run: status, times, totals, error",
                    "security": secured,
                    "parameters": [_RUN_ID],
                    "responses": {
                        "200": _json("The run.", _RUN),
                        "401": _UNAUTHORIZED,
                        "404": problem("No run with that id."),
                    },
                }
            },
            **doctor_paths(),
            **ops_paths(secured),
            **operational_paths("Postgres and RabbitMQ"),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a role's token: CRMSYNC_ADMIN_VIEWER_TOKEN, "
                    "CRMSYNC_ADMIN_OPERATOR_TOKEN or CRMSYNC_ADMIN_TOKEN (admin)",
                }
            },
            "schemas": {
                **params,
                "Run": _RUN_SCHEMA,
                "Job": _job_schema(),
                "Problem": PROBLEM_SCHEMA,
            },
        },
    }
