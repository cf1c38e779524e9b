"""The console's operations pages: dead letters (replay, purge), provider actions
(retry) and the record trace. They call :mod:`shared.ops`, as the CLI and the admin
API (:mod:`services.scheduler.admin_ops`) do; acting needs the ``operator`` role."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from services.scheduler.admin_ops import broker_connection, ops_specs
from services.scheduler.auth import Role, require_role
from services.scheduler.console.render import page
from services.scheduler.keys import scheduler_key
from shared.ops.actions import STATUSES, list_actions, retry_actions
from shared.ops.dead_letters import (
    UnknownDeadQueueError,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
    show_dead_letters,
)
from shared.ops.trace import MAX_QUERY_CHARS, trace
from shared.problems import Problem

# Messages shown on one dead queue's page, actions on the actions page.
DEAD_LETTERS_SHOWN = 50
ACTIONS_SHOWN = 200
_ACTION_ID = re.compile(r"[0-9]{1,18}")
# Dead-letter ids are AMQP message ids (event ids) or ``sha256:<hex>``.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,255}")
_FLASH = {
    "replayed": "Replayed {n} message(s) to the work queue.",
    "purged": "Purged {n} message(s) for good.",
    "retried": "Queued {n} provider action(s) for a retry.",
}


def _flash(request: web.Request) -> str:
    template = _FLASH.get(request.query.get("done", ""))
    n = request.query.get("n", "")
    return template.format(n=n) if template and n.isdigit() else ""


def _ids(form: MultiDictProxy[Any], pattern: re.Pattern[str]) -> list[str]:
    ids = [v for v in form.getall("id", []) if isinstance(v, str)]
    bad = [v for v in ids if not pattern.fullmatch(v)]
    if bad:
        raise Problem(
            422, "Unprocessable Content", "id: not a valid id",
            errors=[{"parameter": "id", "detail": "not a valid id"}],
        )  # fmt: skip
    return ids


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /console/dead-letters``: every dead queue, count, oldest age, reasons."""
    app = request.app
    summaries = await list_dead_letters(
        broker_connection(app), topology=app[scheduler_key].broker.topology, specs=ops_specs(app)
    )
    return page(request, "dead_letters.html", summaries=summaries, flash=_flash(request))


async def dead_queue(request: web.Request) -> web.Response:
    """``GET /console/dead-letters/{queue}``: its first messages (they stay)."""
    app = request.app
    queue = request.match_info["queue"]
    try:
        messages = await show_dead_letters(
            broker_connection(app),
            topology=app[scheduler_key].broker.topology,
            specs=ops_specs(app),
            queue=queue,
            limit=DEAD_LETTERS_SHOWN,
        )
    except UnknownDeadQueueError as exc:
        raise Problem(404, "Not Found", str(exc)) from exc
    return page(
        request,
        "dead_queue.html",
        queue=queue,
        messages=messages,
        shown=DEAD_LETTERS_SHOWN,
        flash=_flash(request),
    )


async def replay(request: web.Request) -> web.Response:
    """``POST /console/dead-letters/{queue}/replay`` (operator): ``id`` fields, or
    ``all=1``; back to the work queue, confirmed before the dead copy is acked."""
    require_role(request, Role.operator)
    app = request.app
    queue = request.match_info["queue"]
    form = await request.post()
    everything = form.get("all") == "1"
    ids = [] if everything else _ids(form, _MESSAGE_ID)
    if not everything and not ids:
        raise Problem(422, "Unprocessable Content", "choose messages to replay, or all",
                      errors=[{"parameter": "id", "detail": "required"}])  # fmt: skip
    try:
        result = await replay_dead_letters(
            broker_connection(app),
            topology=app[scheduler_key].broker.topology,
            specs=ops_specs(app),
            queue=queue,
            ids=ids or None,
            all=everything,
        )
    except UnknownDeadQueueError as exc:
        raise Problem(404, "Not Found", str(exc)) from exc
    n = len(result.replayed)
    raise web.HTTPSeeOther(f"/console/dead-letters/{quote(queue)}?done=replayed&n={n}")


async def purge(request: web.Request) -> web.Response:
    """``POST /console/dead-letters/{queue}/purge`` (operator): ``id`` fields and
    ``confirm=yes``; the messages are dropped for good."""
    require_role(request, Role.operator)
    app = request.app
    queue = request.match_info["queue"]
    form = await request.post()
    ids = _ids(form, _MESSAGE_ID)
    if not ids:
        raise Problem(422, "Unprocessable Content", "choose messages to purge",
                      errors=[{"parameter": "id", "detail": "required"}])  # fmt: skip
    if form.get("confirm") != "yes":
        raise Problem(422, "Unprocessable Content", "tick the box to confirm the purge",
                      errors=[{"parameter": "confirm", "detail": "must be yes"}])  # fmt: skip
    try:
        n = await purge_dead_letters(
            broker_connection(app),
            topology=app[scheduler_key].broker.topology,
            specs=ops_specs(app),
            queue=queue,
            ids=ids,
        )
    except UnknownDeadQueueError as exc:
        raise Problem(404, "Not Found", str(exc)) from exc
    raise web.HTTPSeeOther(f"/console/dead-letters/{quote(queue)}?done=purged&n={n}")


async def actions(request: web.Request) -> web.Response:
    """``GET /console/actions[?status=failed]``: provider actions, newest first."""
    status = request.query.get("status", "failed") or None
    if status == "any":
        status = None
    if status is not None and status not in STATUSES:
        raise Problem(422, "Unprocessable Content", f"status must be one of {', '.join(STATUSES)}",
                      errors=[{"parameter": "status", "detail": "unknown status"}])  # fmt: skip
    rows = await list_actions(request.app[scheduler_key].pool, status, ACTIONS_SHOWN)
    return page(
        request,
        "actions.html",
        rows=rows,
        action_status=status or "any",
        statuses=STATUSES,
        flash=_flash(request),
    )


async def retry(request: web.Request) -> web.Response:
    """``POST /console/actions/retry`` (operator): ``id`` fields, or ``all_failed=1``."""
    require_role(request, Role.operator)
    form = await request.post()
    everything = form.get("all_failed") == "1"
    ids = [] if everything else _ids(form, _ACTION_ID)
    if not everything and not ids:
        raise Problem(422, "Unprocessable Content", "choose actions to retry, or all failed",
                      errors=[{"parameter": "id", "detail": "required"}])  # fmt: skip
    retried = await retry_actions(request.app[scheduler_key].pool, ids, all_failed=everything)
    raise web.HTTPSeeOther(f"/console/actions?done=retried&n={len(retried)}")


async def trace_page(request: web.Request) -> web.Response:
    """``GET /console/trace?q=``: one record's story (email, customer / order /
    profile / event id)."""
    q = request.query.get("q", "").strip()
    result = None
    if q:
        if len(q) > MAX_QUERY_CHARS or "\x00" in q:
            raise Problem(422, "Unprocessable Content", f"q: 1 to {MAX_QUERY_CHARS} characters",
                          errors=[{"parameter": "q", "detail": "too long"}])  # fmt: skip
        result = await trace(request.app[scheduler_key].pool, q)
    return page(request, "trace.html", q=q, result=result, max_chars=MAX_QUERY_CHARS)
