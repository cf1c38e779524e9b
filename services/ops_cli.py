"""``crmsync dead-letters``, ``crmsync actions``, ``crmsync trace``: repair from the shell.

They talk to RabbitMQ (``CRMSYNC_AMQP_URL``, AMQP only: no management plugin) and
Postgres (``CRMSYNC_DATABASE_URL``) directly through :mod:`shared.ops`, the same
functions the admin API (``/v1/dead-letters``, ``/v1/actions``, ``/v1/trace``) and
the web console call. Exit status: 0 done, 1 something asked for was not found or
not retried, 2 Postgres or RabbitMQ unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aio_pika
import asyncpg
import click
from aio_pika.abc import AbstractConnection

from shared.db import create_pool
from shared.ops.actions import STATUSES, ProviderActionRow, list_actions, retry_actions
from shared.ops.dead_letters import (
    UnknownDeadQueueError,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
    show_dead_letters,
)
from shared.ops.trace import trace
from shared.settings import CommonSettings
from shared.topology import Topology

T = TypeVar("T")
# Seconds to wait for one RabbitMQ node to answer.
CONNECT_TIMEOUT_S = 5.0


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except UnknownDeadQueueError as exc:
        raise click.UsageError(str(exc)) from exc
    except (OSError, asyncpg.PostgresError, aio_pika.exceptions.AMQPError) as exc:
        click.echo(f"cannot reach Postgres or RabbitMQ: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)


async def _with_broker(
    work: Callable[[AbstractConnection, Topology], Awaitable[T]],
) -> T:
    settings = CommonSettings()
    urls = [u.strip() for u in settings.amqp_url.get_secret_value().split(",") if u.strip()]
    last: Exception | None = None
    for url in urls:  # the cluster's nodes, in order
        try:
            connection = await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": "crmsync-ops-cli"},
                timeout=CONNECT_TIMEOUT_S,
            )
        except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
            last = exc
            continue
        try:
            return await work(connection, Topology(settings.amqp_namespace))
        finally:
            await connection.close()
    raise OSError(f"no RabbitMQ node answered: {last}")


async def _with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    pool = await create_pool(CommonSettings().database_url, min_size=1, max_size=1)
    try:
        return await work(pool)
    finally:
        await pool.close()


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@click.group("dead-letters")
def dead_letters() -> None:
    """Messages in the <queue>.dead queues: list, show, replay, purge."""


@dead_letters.command("list")
@click.argument("queue", required=False)
def list_command(queue: str | None) -> None:
    """Each dead queue (or QUEUE): count, oldest age, reasons."""
    summaries = _run(_with_broker(lambda c, t: list_dead_letters(c, topology=t, queue=queue)))
    for s in summaries:
        if queue is None and s.count == 0:
            continue
        age = f"{s.oldest_age_s:.0f}s" if s.oldest_age_s is not None else "-"
        reasons = ", ".join(f"{n} x {r}" for r, n in sorted(s.reasons.items(), key=lambda i: -i[1]))
        click.echo(f"{s.queue:<44} {s.count:>7}  oldest={age:<8} {reasons}")
    total = sum(s.count for s in summaries)
    click.echo(
        f"{total} dead letter(s) in {sum(1 for s in summaries if s.count)} queue(s)", err=True
    )


@dead_letters.command("show")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
def show_command(queue: str, limit: int) -> None:
    """The first messages of QUEUE (they stay in it)."""
    letters = _run(
        _with_broker(lambda c, t: show_dead_letters(c, topology=t, queue=queue, limit=limit))
    )
    for d in letters:
        click.echo(
            f"{d.message_id}  type={d.type or '-'}  attempts={d.attempts}  time={_when(d.time)}\n"
            f"  reason: {d.reason or '-'}\n  first error: {d.first_error or '-'}\n"
            f"  body: {d.body_preview}"
        )
    click.echo(f"{len(letters)} message(s) shown", err=True)


@dead_letters.command("replay")
@click.argument("queue")
@click.option("--id", "ids", multiple=True, help="A message id (repeat for more).")
@click.option("--all", "replay_all", is_flag=True, help="Every message in QUEUE.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
def replay_command(queue: str, ids: tuple[str, ...], replay_all: bool, dry_run: bool) -> None:
    """Send messages of QUEUE back to its work queue, attempt counter reset.

    Each is confirmed by RabbitMQ before its dead copy is acked: a crash loses
    nothing (at worst a message is replayed twice, which the handlers absorb).
    """
    if bool(ids) == replay_all:
        raise click.UsageError("give --id ID ..., or --all")
    result = _run(
        _with_broker(
            lambda c, t: replay_dead_letters(
                c, topology=t, queue=queue, ids=list(ids), all=replay_all, dry_run=dry_run
            )
        )
    )
    verb = "would replay" if dry_run else "replayed"
    click.echo(
        f"{verb} {len(result.replayed)} message(s)" + "".join(f"\n  {i}" for i in result.replayed)
    )
    if result.skipped:
        click.echo(f"not in {queue}: {', '.join(result.skipped)}", err=True)
        sys.exit(1)


@dead_letters.command("purge")
@click.argument("queue")
@click.option("--id", "ids", multiple=True, required=True, help="A message id (repeat).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queue: str, ids: tuple[str, ...], yes: bool) -> None:
    """Drop messages IDS from QUEUE for good."""
    if not yes:
        click.confirm(f"drop {len(ids)} message(s) from {queue} for good?", abort=True)
    dropped = _run(
        _with_broker(lambda c, t: purge_dead_letters(c, topology=t, queue=queue, ids=list(ids)))
    )
    click.echo(f"purged {dropped} message(s)")
    if dropped < len(set(ids)):
        sys.exit(1)


def _action_line(a: ProviderActionRow) -> str:
    return (
        f"{a.id:>8}  {a.status:<10} {a.kind:<21} {a.provider:<9} customer={a.customer_id}"
        f" ({a.email or '-'})  attempts={a.attempts}/{a.max_attempts}"
        f"  updated={_when(a.updated_at)}" + (f"\n{'':>10}{a.last_error}" if a.last_error else "")
    )


@click.group()
def actions() -> None:
    """Provider actions (tier changes sent to Shopify / Commerce7): list, retry."""


@actions.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def actions_list(status: str | None, limit: int) -> None:
    """Actions, newest first, with their last error."""
    rows = _run(_with_pool(lambda pool: list_actions(pool, status, limit)))
    for row in rows:
        click.echo(_action_line(row))
    click.echo(f"{len(rows)} action(s)", err=True)


@actions.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(1, 2**63 - 1))
@click.option("--all-failed", is_flag=True, help="Every failed action.")
def actions_retry(ids: tuple[int, ...], all_failed: bool) -> None:
    """Put failed actions IDS (or --all-failed) back to pending, queued via the outbox."""
    if bool(ids) == all_failed:
        raise click.UsageError("give action ids, or --all-failed")
    rows = _run(_with_pool(lambda pool: retry_actions(pool, list(ids) or None, all_failed)))
    click.echo(
        f"{len(rows)} action(s) queued again"
        + "".join(f"\n  {r.id} {r.kind} {r.provider}" for r in rows)
    )
    missing = sorted(set(ids) - {r.id for r in rows})
    if missing:
        click.echo(f"not failed (or no such action): {missing}", err=True)
        sys.exit(1)


@click.command("trace")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="The admin API's JSON instead of lines.")
def trace_command(query: str, as_json: bool) -> None:
    """The story of one record: QUERY is an email, customer id, order id, profile id,
    student id or event id."""
    try:
        result = _run(_with_pool(lambda pool: trace(pool, query)))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        body = {
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
        click.echo(json.dumps(body, indent=2, default=str))
        return
    for e in result.entries:
        click.echo(f"{e.time.isoformat(timespec='milliseconds')}  {e.kind:<26} {e.summary}")
    matched = ", ".join(f"{k}={v}" for k, v in result.matched.items() if v) or "nothing"
    click.echo(f"{len(result.entries)} entries; matched {matched}", err=True)
    if not result.entries:
        sys.exit(1)
