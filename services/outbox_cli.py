"""``crmsync outbox list`` / ``crmsync outbox retry``: outbox rows that did not get through.

They talk to Postgres (``CRMSYNC_DATABASE_URL``) through :mod:`shared.outbox_failed`,
the functions the admin tooling uses too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import click

from shared.db import create_pool
from shared.outbox_failed import OutboxRow, RowStatus, list_rows, retry_failed
from shared.settings import CommonSettings

T = TypeVar("T")


def _with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = await create_pool(CommonSettings().database_url, min_size=1, max_size=1)
        try:
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        click.echo(f"cannot reach Postgres: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)


def _line(row: OutboxRow) -> str:
    when = row.failed_at or row.next_attempt_at
    label = "failed" if row.failed_at else "next"
    return (
        f"{row.id:>10}  {row.event_id:<40}  {row.routing_key:<36}  attempts={row.attempts}"
        f"  {label}={when.isoformat(timespec='seconds')}\n{'':>12}{row.last_error or ''}"
    )


@click.group()
def outbox() -> None:
    """Outbox rows RabbitMQ refused: list them, hand them back to the relay."""


@outbox.command("list")
@click.option(
    "--retrying",
    "status",
    flag_value="retrying",
    help="Rows still retried after a refusal, instead of the parked ones.",
)
@click.option("--failed", "status", flag_value="failed", default=True, help="Parked rows.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def list_command(status: RowStatus, limit: int) -> None:
    """Rows parked as failed (default) or still retried, oldest first, with the error."""
    rows = _with_pool(lambda pool: list_rows(pool, status, limit=limit))
    for row in rows:
        click.echo(_line(row))
    click.echo(f"{len(rows)} row(s) {status}", err=True)


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Every parked row.")
def retry_command(ids: tuple[int, ...], retry_all: bool) -> None:
    """Hand parked rows IDS (or --all) back to the relay, attempts reset."""
    if bool(ids) == retry_all:
        raise click.UsageError("give row ids, or --all")
    freed = _with_pool(lambda pool: retry_failed(pool, None if retry_all else ids))
    click.echo(f"{len(freed)} row(s) handed back to the relay" + (f": {freed}" if freed else ""))
    if ids and len(freed) < len(set(ids)):
        missing = sorted(set(ids) - set(freed))
        click.echo(f"not parked (or no such row): {missing}", err=True)
        sys.exit(1)
