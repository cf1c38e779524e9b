"""Click commands: ``crmsync scheduler``, ``jobs``, ``trigger``, ``runs``.

The last three are clients of the admin API (``CRMSYNC_ADMIN_URL``, token from
``CRMSYNC_ADMIN_TOKEN``), so they validate and authorise exactly as the API does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from services.scheduler.client import AdminApiError, AdminClient
from shared.logging import configure_logging
from shared.settings import SchedulerSettings, exit_if_unsafe

T = TypeVar("T")
# Seconds between two polls of a run with --wait.
WAIT_POLL_S = 0.5
FINISHED = ("succeeded", "failed", "missed")


@click.command()
@click.option("--host", default=None, help="Bind address [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8082].")
def scheduler(host: str | None, port: int | None) -> None:
    """Run a scheduler replica: cron ticks (exactly once across replicas) and the admin API."""
    from services.scheduler.main import serve

    settings = SchedulerSettings()
    exit_if_unsafe(settings, "scheduler")
    configure_logging(settings.log_level, settings.log_format, service="scheduler")
    serve(settings, host or settings.scheduler_host, port or settings.scheduler_port)


def _url_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--url", default=None, help="Admin API base URL [default: CRMSYNC_ADMIN_URL]."
    )(f)


def _call(url: str | None, action: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run ``action`` against the admin API; a problem answer exits 1 with its text."""
    settings = SchedulerSettings()

    async def go() -> T:
        async with AdminClient(
            url or settings.admin_url, settings.admin_token.get_secret_value()
        ) as api:
            return await action(api)

    try:
        return asyncio.run(go())
    except AdminApiError as exc:
        click.echo(f"error: {exc.describe()}", err=True)
        sys.exit(1)


def _when(value: str | None) -> str:
    """An API timestamp (ISO 8601) as whole seconds in UTC: ``2026-11-21T10:00:07Z``."""
    if not value:
        return "-"
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _totals(totals: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in totals.items())


def _run_line(run: dict[str, Any]) -> str:
    who = run["trigger"] + (f" by {run['triggeredBy']}" if run.get("triggeredBy") else "")
    return (
        f"{run['id']:>6}  {run['job']:<20} {run['status']:<10} {_when(run['tick']):<21}"
        f"{who:<28} {_totals(run['totals'])}"
        + (f"  error: {run['error']}" if run.get("error") else "")
    )


@click.command()
@_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def jobs(url: str | None, as_json: bool) -> None:
    """List the jobs: schedule, next tick, last run."""
    listed = _call(url, lambda api: api.jobs())
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    click.echo(f"{'JOB':<20} {'ENABLED':<8} {'SCHEDULE':<24} {'NEXT TICK':<21} LAST RUN")
    for job in listed:
        schedule = f"{job['schedule']['cron']} {job['schedule']['timezone']}"
        last = job.get("lastRun")
        last_text = f"#{last['id']} {last['status']} {_when(last['tick'])}" if last else "-"
        click.echo(
            f"{job['name']:<20} {'yes' if job['enabled'] else 'no':<8} {schedule:<24} "
            f"{_when(job['nextTick']):<21} {last_text}"
        )


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("batchSize=50", "onlyNewProfiles=true")`` → ``{"batchSize": 50, ...}``: values
    that read as JSON (numbers, true/false, null) are that, others stay strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


@click.command()
@click.argument("job")
@click.option("--param", "-p", "pairs", multiple=True, metavar="KEY=VALUE", help="A parameter.")
@click.option("--wait", is_flag=True, help="Follow the run to its end; exit 1 unless it succeeds.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="--wait limit, s.")
@_url_option
def trigger(job: str, pairs: tuple[str, ...], wait: bool, timeout: float, url: str | None) -> None:
    """Trigger JOB now, e.g. `crmsync trigger packages.bulk_sync -p batchSize=50 --wait`."""
    params = _parse_params(pairs)
    accepted = _call(url, lambda api: api.trigger(job, params))
    run_id = int(accepted["runId"])
    click.echo(f"run {run_id} of {job}: {accepted['status']}")
    if not wait:
        return
    run = _call(url, lambda api: _follow(api, run_id, timeout))
    click.echo(_run_line(run))
    sys.exit(0 if run["status"] == "succeeded" else 1)


async def _follow(api: AdminClient, run_id: int, timeout_s: float) -> dict[str, Any]:
    """Poll the run, redrawing one progress line, until it ends or ``timeout_s`` passes."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    shown, last_status = "", ""
    while True:
        run = await api.run(run_id)
        elapsed = time.monotonic() - started
        line = f"run {run_id} {run['status']} {elapsed:5.1f}s {_totals(run['totals'])}"
        if tty:
            click.echo("\r" + line.ljust(len(shown)), nl=False, err=True)
        elif run["status"] != last_status:  # a log, not a terminal: one line per change
            click.echo(line, err=True)
        shown, last_status = line, run["status"]
        if run["status"] in FINISHED:
            if tty:
                click.echo("", err=True)
            return run
        if elapsed > timeout_s:
            raise AdminApiError(f"run {run_id} still {run['status']} after {timeout_s:.0f} s")
        await asyncio.sleep(WAIT_POLL_S)


@click.command()
@click.argument("job", required=False)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@_url_option
def runs(job: str | None, limit: int, as_json: bool, url: str | None) -> None:
    """Run history, newest first: of JOB, or of every job."""
    listed = _call(url, lambda api: api.runs(job, limit))
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    click.echo(f"{'RUN':>6}  {'JOB':<20} {'STATUS':<10} {'TICK':<21}{'TRIGGER':<28} TOTALS")
    for run in listed:
        click.echo(_run_line(run))
