"""The console's read pages (overview, runs, one run) and the "run now" action."""

from __future__ import annotations

import re
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from services.scheduler.auth import Role, require_role
from services.scheduler.console.budget import hubspot_budget, mean_use
from services.scheduler.console.queues import queue_report
from services.scheduler.console.render import page
from services.scheduler.history import create_manual_run, get_run, last_runs, list_runs
from services.scheduler.keys import scheduler_key
from shared.problems import Problem

console_http_key = web.AppKey("console_http", aiohttp.ClientSession)

RUNS_PER_PAGE = 50
_ID = re.compile(r"[0-9]{1,18}")
_KEY = re.compile(r"[0-9a-f]{16,64}")
ACTION_STATUSES = ("pending", "processing", "completed", "failed")


async def _queue_rows(request: web.Request) -> tuple[list[dict[str, Any]], str, str]:
    scheduler = request.app[scheduler_key]
    topology = scheduler.broker.topology
    specs = sorted(scheduler.broker.queues, key=lambda s: s.name)
    names = [n for s in specs for n in (topology.queue(s), topology.dead_queue(s))]
    settings = scheduler.settings
    report = await queue_report(
        request.app[console_http_key],
        scheduler.broker.connection,
        names,
        management_url=settings.rabbitmq_management_url.get_secret_value(),
        amqp_url=settings.amqp_url.get_secret_value(),
    )
    rows = []
    for spec in specs:
        rows.append(
            {
                "label": spec.name,
                "work": report.queues.get(topology.queue(spec)),
                "dead": report.queues.get(topology.dead_queue(spec)),
            }
        )
    return rows, report.source, report.note


async def _job_rows(request: web.Request) -> list[dict[str, Any]]:
    scheduler = request.app[scheduler_key]
    now = scheduler.clock.now()
    last = await last_runs(scheduler.pool, [j.name for j in scheduler.jobs])
    return [
        {
            "name": job.name,
            "cron": job.cron,
            "timezone": job.timezone.key,
            "enabled": job.enabled,
            "next_tick": job.next_tick(now) if job.enabled else None,
            "last": last.get(job.name),
            "form_key": secrets.token_hex(16),
        }
        for job in scheduler.jobs
    ]


async def _action_counts(request: web.Request) -> dict[str, dict[str, int]]:
    rows = await request.app[scheduler_key].pool.fetch(
        "SELECT provider, status, count(*) AS n FROM provider_actions GROUP BY provider, status"
    )
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["provider"], dict.fromkeys(ACTION_STATUSES, 0))[row["status"]] = row[
            "n"
        ]
    return counts


async def overview(request: web.Request) -> web.Response:
    """``GET /console``: queues, jobs, provider actions, HubSpot budget."""
    queues, source, note = await _queue_rows(request)
    settings = request.app[scheduler_key].settings
    budget = await hubspot_budget(
        request.app[console_http_key], settings.console_syncer_metrics_urls
    )
    return page(
        request,
        "overview.html",
        queues=queues,
        queue_source=source,
        queue_note=note,
        jobs=await _job_rows(request),
        actions=await _action_counts(request),
        statuses=ACTION_STATUSES,
        budget=budget,
        budget_mean=mean_use(budget),
    )


async def runs(request: web.Request) -> web.Response:
    """``GET /console/runs[?job=NAME][&before=ID]``: newest first, 50 a page."""
    scheduler = request.app[scheduler_key]
    job = request.query.get("job") or None
    if job is not None and job not in scheduler.jobs_by_name:
        raise Problem(404, "Not Found", f"no job named {job!r}")
    raw_before = request.query.get("before", "")
    before = int(raw_before) if _ID.fullmatch(raw_before) else None
    rows = await list_runs(scheduler.pool, job=job, limit=RUNS_PER_PAGE, before=before)
    older = rows[-1]["id"] if len(rows) == RUNS_PER_PAGE else None
    return page(
        request,
        "runs.html",
        runs=rows,
        job=job,
        jobs=[j.name for j in scheduler.jobs],
        older=older,
    )


async def one_run(request: web.Request) -> web.Response:
    """``GET /console/runs/{id}``: parameters, totals, timings and the error."""
    raw = request.match_info["id"]
    row = await get_run(request.app[scheduler_key].pool, int(raw)) if _ID.fullmatch(raw) else None
    if row is None:
        raise Problem(404, "Not Found", f"no run {raw}")
    duration = None
    if row["started_at"] is not None and row["finished_at"] is not None:
        duration = (row["finished_at"] - row["started_at"]).total_seconds()
    return page(request, "run.html", run=row, duration_s=duration)


async def _form_key(request: web.Request) -> str | None:
    """The form's one-time key (``key``): a double submit makes one run, not two."""
    raw = (await request.post()).get("key")
    return f"console:{raw}" if isinstance(raw, str) and _KEY.fullmatch(raw) else None


async def run_now(request: web.Request) -> web.Response:
    """``POST /console/jobs/{name}/run`` (operator): a manual run with default parameters."""
    role = require_role(request, Role.operator)
    scheduler = request.app[scheduler_key]
    job = scheduler.jobs_by_name.get(request.match_info["name"])
    if job is None:
        raise Problem(404, "Not Found", f"no job named {request.match_info['name']!r}")
    if not job.enabled:
        raise Problem(409, "Conflict", f"job {job.name!r} is disabled in the settings")
    run = await create_manual_run(
        scheduler.pool,
        job=job.name,
        params=job.params().model_dump(mode="json", by_alias=True),
        triggered_by=f"console ({role.name})",
        idempotency_key=await _form_key(request),
        now=scheduler.clock.now(),
        source=scheduler.settings.source,
    )
    raise web.HTTPSeeOther(f"/console/runs/{run.run_id}")
