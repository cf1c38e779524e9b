"""Admin API for operations: dead letters, provider actions, record trace.

=======================================  ========  ==========================================
route                                    role      does
=======================================  ========  ==========================================
``GET /v1/dead-letters``                 viewer    every ``.dead`` queue: count, age, reasons
``GET /v1/dead-letters/{queue}?limit=``  viewer    its first messages (they stay)
``POST /v1/dead-letters/{queue}/replay`` operator ``{"ids": [...]}`` or ``{"all": true}``,
                                                   ``"dry_run"``: back to the work queue
``POST /v1/dead-letters/{queue}/purge``  operator ``{"ids": [...]}``: dropped for good
``GET /v1/actions?status=&limit=``       viewer    provider actions, newest first
``POST /v1/actions/retry``               operator ``{"ids": [...]}`` or ``{"all_failed": true}``
``GET /v1/trace?q=``                     viewer    one record's story (:mod:`shared.ops.trace`)
=======================================  ========  ==========================================

The work is done by :mod:`shared.ops` (the CLI and the web console call the same
functions); this module parses, authorises and renders JSON. :func:`ops_specs` and
:func:`broker_connection` give the console the same queue list and connection.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from aio_pika.abc import AbstractConnection
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)

from services.scheduler.auth import Role, require_role
from services.scheduler.keys import scheduler_key
from shared import queues
from shared.ops.actions import STATUSES, ProviderActionRow, list_actions, retry_actions
from shared.ops.dead_letters import (
    DeadLetter,
    UnknownDeadQueueError,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
    show_dead_letters,
)
from shared.ops.trace import MAX_QUERY_CHARS, TraceResult, trace
from shared.problems import Problem, validation_problem
from shared.topology import QueueSpec

# Messages shown per dead queue at most (GET ...?limit=), and ids per request.
MAX_LIMIT = 500
MAX_IDS = 1000
MAX_ID = 2**63 - 1
_INTEGER = re.compile(r"[0-9]{1,6}")


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must be an array, not null")
    return value


def _action_ids(value: Any) -> Any:
    """JSON integers only (``2.0`` is one; ``true``, ``"2"``, ``2.5`` are not)."""
    value = _not_null(value)
    if not isinstance(value, list):
        return value
    ids = []
    for item in value:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_ID:
            raise ValueError(f"action ids are integers from 1 to {MAX_ID}")
        ids.append(item)
    return ids


class ReplayBody(BaseModel):
    """``{"ids": ["evt-1"], "all": false, "dry_run": false}``: ids or all."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    ids: list[StrictStr] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    all_: StrictBool = Field(default=False, alias="all")
    dry_run: StrictBool = False
    _ids = field_validator("ids", mode="before")(_not_null)


class PurgeBody(BaseModel):
    """``{"ids": ["evt-1"]}``."""

    model_config = ConfigDict(extra="forbid")
    ids: list[StrictStr] = Field(min_length=1, max_length=MAX_IDS)


class RetryBody(BaseModel):
    """``{"ids": [17]}`` or ``{"all_failed": true}``."""

    model_config = ConfigDict(extra="forbid")
    ids: list[int] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    all_failed: StrictBool = False
    _ids = field_validator("ids", mode="before")(_action_ids)


def ops_specs(app: web.Application) -> list[QueueSpec]:
    """The work queues whose dead letters the admin service shows: the syncer's
    (:data:`shared.queues.ALL`) and the scheduler's job queues."""
    specs: dict[str, QueueSpec] = {q.name: q for q in queues.ALL}
    specs |= {j.queue.name: j.queue for j in app[scheduler_key].jobs}
    return list(specs.values())


def broker_connection(app: web.Application) -> AbstractConnection:
    """The scheduler's RabbitMQ connection.

    Raises:
        Problem: 503 while RabbitMQ is not connected.
    """
    broker = app[scheduler_key].broker
    if broker.connection is None or broker.connection.is_closed or not broker.ready:
        raise Problem(
            503,
            "Service Unavailable",
            "RabbitMQ is not connected; retry later",
            headers={"Retry-After": "2"},
        )
    return broker.connection


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    body = asdict(letter)
    body["time"] = _iso(letter.time)
    return body


def action_json(row: ProviderActionRow) -> dict[str, Any]:
    body = asdict(row)
    for key in ("next_retry_at", "created_at", "updated_at", "completed_at"):
        body[key] = _iso(body[key])
    return body


def trace_json(result: TraceResult) -> dict[str, Any]:
    return {
        "query": result.query,
        "matched": result.matched,
        "entries": [
            {
                "time": e.time.isoformat(),
                "kind": e.kind,
                "summary": e.summary,
                "details": e.details,
            }
            for e in result.entries
        ],
    }


def _queue(request: web.Request) -> str:
    name = request.match_info["queue"]
    known = {s.name for s in ops_specs(request.app)}
    if name.removesuffix(".dead") not in known:
        raise Problem(
            404,
            "Not Found",
            f"no dead queue {name!r}",
            errors=[{"parameter": "queue", "detail": "not a crmsync queue"}],
        )
    return name


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise Problem(400, "Bad Request", f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Problem(400, "Bad Request", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit", "")
    if raw == "":
        return default
    value = int(raw) if _INTEGER.fullmatch(raw) else 0
    if not 1 <= value <= MAX_LIMIT:
        detail = f"an integer from 1 to {MAX_LIMIT}"
        raise Problem(
            422,
            "Unprocessable Content",
            f"limit must be {detail}",
            errors=[{"parameter": "limit", "detail": detail}],
        )
    return value


async def get_dead_letters(request: web.Request) -> web.Response:
    summaries = await list_dead_letters(
        broker_connection(request.app),
        topology=request.app[scheduler_key].broker.topology,
        specs=ops_specs(request.app),
    )
    return web.json_response({"queues": [asdict(s) for s in summaries]})


async def get_dead_queue(request: web.Request) -> web.Response:
    queue = _queue(request)
    limit = _limit(request, 20)
    try:
        letters = await show_dead_letters(
            broker_connection(request.app),
            topology=request.app[scheduler_key].broker.topology,
            specs=ops_specs(request.app),
            queue=queue,
            limit=limit,
        )
    except UnknownDeadQueueError as exc:
        raise Problem(404, "Not Found", str(exc)) from exc
    return web.json_response({"queue": queue, "messages": [dead_letter_json(d) for d in letters]})


async def post_replay(request: web.Request) -> web.Response:
    require_role(request, Role.operator)
    queue = _queue(request)
    body: ReplayBody = await _body(request, ReplayBody)
    if not body.all_ and not body.ids:
        raise Problem(
            422,
            "Unprocessable Content",
            "give ids, or all: true",
            errors=[{"pointer": "/ids", "detail": "ids or all is required"}],
        )
    try:
        result = await replay_dead_letters(
            broker_connection(request.app),
            topology=request.app[scheduler_key].broker.topology,
            specs=ops_specs(request.app),
            queue=queue,
            ids=body.ids,
            all=body.all_,
            dry_run=body.dry_run,
        )
    except UnknownDeadQueueError as exc:
        raise Problem(404, "Not Found", str(exc)) from exc
    return web.json_response(asdict(result))


async def post_purge(request: web.Request) -> web.Response:
    require_role(request, Role.operator)
    queue = _queue(request)
    body: PurgeBody = await _body(request, PurgeBody)
    try:
        purged = await purge_dead_letters(
            broker_connection(request.app),
            topology=request.app[scheduler_key].broker.topology,
            specs=ops_specs(request.app),
            queue=queue,
            ids=body.ids,
        )
    except UnknownDeadQueueError as exc:
        raise Problem(404, "Not Found", str(exc)) from exc
    return web.json_response({"purged": purged})


async def get_actions(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        detail = f"one of {', '.join(STATUSES)}"
        raise Problem(
            422,
            "Unprocessable Content",
            f"status must be {detail}",
            errors=[{"parameter": "status", "detail": detail}],
        )
    rows = await list_actions(request.app[scheduler_key].pool, status, _limit(request, 100))
    return web.json_response({"actions": [action_json(r) for r in rows]})


async def post_retry(request: web.Request) -> web.Response:
    require_role(request, Role.operator)
    body: RetryBody = await _body(request, RetryBody)
    if not body.all_failed and not body.ids:
        raise Problem(
            422,
            "Unprocessable Content",
            "give ids, or all_failed: true",
            errors=[{"pointer": "/ids", "detail": "ids or all_failed is required"}],
        )
    rows = await retry_actions(request.app[scheduler_key].pool, body.ids, body.all_failed)
    return web.json_response({"retried": [action_json(r) for r in rows]})


async def get_trace(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    try:
        result = await trace(request.app[scheduler_key].pool, query)
    except ValueError as exc:
        detail = f"1 to {MAX_QUERY_CHARS} characters without NUL"
        raise Problem(
            422, "Unprocessable Content", f"q: {exc}", errors=[{"parameter": "q", "detail": detail}]
        ) from exc
    return web.json_response(trace_json(result))


def setup_ops_routes(app: web.Application) -> None:
    app.router.add_get("/v1/dead-letters", get_dead_letters)
    app.router.add_get("/v1/dead-letters/{queue}", get_dead_queue)
    app.router.add_post("/v1/dead-letters/{queue}/replay", post_replay)
    app.router.add_post("/v1/dead-letters/{queue}/purge", post_purge)
    app.router.add_get("/v1/actions", get_actions)
    app.router.add_post("/v1/actions/retry", post_retry)
    app.router.add_get("/v1/trace", get_trace)
