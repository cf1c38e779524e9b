"""``crmsync repcard sync``: start a RepCard pull through the admin API and follow it.

The friendly form of ``crmsync trigger repcard.sync -p ...``: the same parameters
(:class:`shared.jobs.RepCardSyncParams`), sent to ``POST /v1/repcard/sync`` with
``CRMSYNC_ADMIN_TOKEN`` (a full pull needs the ``admin`` role). ``--wait`` polls
``GET /v1/repcard/sync?runId=`` and draws one ``rich`` progress bar per entity
(chunks done of chunks, records fetched), then exits 0 only if the run succeeded.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import date
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.scheduler.client import AdminApiError, AdminClient
from shared.settings import SchedulerSettings

# The skip flags, as CLI options and job parameters.
SKIPS = {
    "users": "skipUsers",
    "offices": "skipOffices",
    "customers": "skipCustomers",
    "appointments": "skipAppointments",
    "status-logs": "skipStatusLogs",
    "customer-attachments": "skipCustomerAttachments",
    "appointment-attachments": "skipAppointmentAttachments",
}
POLL_S = 1.0


def sync_params(
    incremental: bool, start: date | None, end: date | None, skips: dict[str, bool]
) -> dict[str, Any]:
    """The job parameters of these options (``--skip-attachments`` skips both kinds)."""
    params: dict[str, Any] = {"incremental": incremental}
    if start is not None:
        params["startDate"] = start.isoformat()
    if end is not None:
        params["endDate"] = end.isoformat()
    for option, name in SKIPS.items():
        if skips.get(option.replace("-", "_")):
            params[name] = True
    if skips.get("attachments"):
        params["skipCustomerAttachments"] = params["skipAppointmentAttachments"] = True
    return params


def _skip_options(f: Any) -> Any:
    for option in (*SKIPS, "attachments"):
        f = click.option(f"--skip-{option}", is_flag=True, help=f"Leave out {option}.")(f)
    return f


@click.group()
def repcard() -> None:
    """RepCard pull (W5): users, offices, customers, appointments, logs, attachments."""


@repcard.command("sync")
@click.option(
    "--incremental/--full", default=True, show_default=True,
    help="Only what changed since each entity's cursor, or everything (needs admin).",
)  # fmt: skip
@click.option("--start-date", type=click.DateTime(["%Y-%m-%d"]), help="Range start, YYYY-MM-DD.")
@click.option("--end-date", type=click.DateTime(["%Y-%m-%d"]), help="Range end, YYYY-MM-DD.")
@_skip_options
@click.option("--wait", is_flag=True, help="Follow the run with progress bars; exit 1 unless ok.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="--wait limit, s.")
@click.option("--url", default=None, help="Admin API base URL [default: CRMSYNC_ADMIN_URL].")
def sync(
    incremental: bool,
    start_date: Any,
    end_date: Any,
    wait: bool,
    timeout: float,
    url: str | None,
    **skips: bool,
) -> None:
    """Start a pull, e.g. `crmsync repcard sync --start-date 2026-11-01 --skip-attachments`."""
    start = start_date.date() if start_date else None
    end = end_date.date() if end_date else None
    flags = {name.removeprefix("skip_"): on for name, on in skips.items()}
    params = sync_params(incremental, start, end, flags)
    settings = SchedulerSettings()
    try:
        code = asyncio.run(
            _run(url or settings.admin_url, settings.admin_token.get_secret_value(), params,
                 wait, timeout)
        )  # fmt: skip
    except AdminApiError as exc:
        click.echo(f"error: {exc.describe()}", err=True)
        sys.exit(1)
    sys.exit(code)


async def _run(url: str, token: str, params: dict[str, Any], wait: bool, timeout_s: float) -> int:
    async with AdminClient(url, token) as api:
        accepted = await api.call("POST", "/v1/repcard/sync", json=params)
        run_id = int(accepted["runId"])
        click.echo(f"run {run_id} of repcard.sync: {accepted['status']}")
        if not wait:
            return 0
        run = await _follow(api, run_id, timeout_s)
    for row in run["entities"]:
        click.echo(
            f"{row['entityType']:<24} {row['status']:<10} fetched={row['recordsFetched']} "
            f"inserted={row['recordsInserted']} updated={row['recordsUpdated']} "
            f"failed={row['recordsFailed']} unlinked={row['recordsUnlinked']}"
            + (f"  error: {row['errorMessage']}" if row["errorMessage"] else "")
        )
    status = run["run"]["status"] if run["run"] else "unknown"
    click.echo(f"run {run_id}: {status}")
    return 0 if status == "succeeded" else 1


async def _follow(api: AdminClient, run_id: int, timeout_s: float) -> dict[str, Any]:
    """Poll the run's log rows until the run ends, one progress bar per entity."""
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )  # fmt: skip
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=Console(stderr=True)) as progress:
        while True:
            body: dict[str, Any] = await api.call(
                "GET", "/v1/repcard/sync", params={"runId": str(run_id)}
            )
            for row in body["entities"]:
                name = row["entityType"]
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=None, info="")
                total = row["chunks"] or None
                info = f"{row['status']} fetched={row['recordsFetched']}"
                progress.update(tasks[name], total=total, completed=row["chunksDone"], info=info)
            run = body["run"]
            if run and run["status"] in ("succeeded", "failed", "missed"):
                return body
            if time.monotonic() > deadline:
                raise AdminApiError(
                    f"run {run_id} still {run and run['status']} after {timeout_s}s"
                )
            await asyncio.sleep(POLL_S)
