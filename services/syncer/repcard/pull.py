"""W5 RepCard pull, shared by every syncer replica (the packages bulk run's pattern).

``syncer.jobs.repcard_sync`` (the job's event) writes one ``repcard_sync_log`` row per
entity (``pending``, or ``skipped`` by a skip flag) with its date window, and the
``plan`` chunk of the first entity, in the transaction that starts the run. Entities
then run one after the other in foreign-key order (:data:`ENTITIES`); within one,
chunk messages on ``syncer.repcard.chunks`` let every replica take a share:

- ``plan`` fetches page 1 (learning ``totalPages``), writes it and enqueues the other
  pages in chunks of :data:`PAGES_PER_CHUNK`; for status logs it enqueues the
  customers (all of them, or those updated since the cursor) in chunks of
  :data:`CUSTOMERS_PER_CHUNK`.
- ``pages`` / ``customers`` fetch their share with no database connection held, then
  upsert and add their counts to the log row in one transaction with their
  idempotency claim, so a redelivered chunk never counts twice.

The share that brings ``chunks_done`` to ``chunks`` ends the entity: children whose
parent has arrived are linked, the rest counted as ``records_unlinked``; the entity is
``failed`` if a page failed after its retries (its error kept), else ``succeeded`` and
its cursor moves (never for a ``range`` run); the next entity's ``plan`` is enqueued in
the same transaction. After the last one the run row gets the totals. A 401 / 403 ends
the run at once: the entity and every pending one ``failed`` with the reason.

Windows (``from_date`` / ``to_date``, whole days, RepCard's only filter): ``full`` none;
``range`` the given dates; ``incremental`` from the entity's cursor (the day its last
successful pull ran to; inclusive, so a record changed later that day is not missed),
with no end. Users and offices take no date filter and are pulled whole every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.repcard.entities import BY_NAME, ENTITIES, Entity
from services.syncer.repcard.finish import advance, end_entity, fail_auth
from services.syncer.repcard.store import Counts, add_counts, rows_of, upsert
from shared.clients.repcard import Page, RepCardAuthError, RepCardClient, date_window
from shared.consumer import Delivery
from shared.db import claim_message
from shared.errors import CrmsyncError, InvalidEventError, ProviderUnavailableError
from shared.events import CloudEvent
from shared.jobs import JobEvent, RepCardSyncParams
from shared.messages.repcard import RepCardChunk
from shared.queues import REPCARD_CHUNKS
from shared.runs import finish_run, job_params, start_run

log = structlog.get_logger(__name__)

PAGES_PER_CHUNK = 5
CUSTOMERS_PER_CHUNK = 50
# Requests one chunk has in flight at once (the limiter paces them all).
FETCH_CONCURRENCY = 4


def sync_type(params: RepCardSyncParams) -> str:
    if params.start_date is not None or params.end_date is not None:
        return "range"
    return "incremental" if params.incremental else "full"


def window(
    kind: str, entity: Entity, params: RepCardSyncParams, cursor: date | None, today: date
) -> tuple[date | None, date]:
    """(from_date, to_date) of ``entity`` in a run of ``kind``; to_date is the day the
    cursor moves to on success (today for full and incremental runs)."""
    if kind == "range":
        return params.start_date, params.end_date or today
    if kind == "incremental" and entity.dated:
        return cursor, today
    return None, today


def chunk_event(event: CloudEvent, deps: SyncerDeps, chunk: RepCardChunk) -> CloudEvent:
    return CloudEvent.create(
        id=f"repcard-{chunk.run_id}-{chunk.entity}-{chunk.kind}-{chunk.chunk}",
        type="repcard.chunk", source=deps.settings.source, subject=str(chunk.run_id),
        correlationid=event.correlationid, data=chunk,
    )  # fmt: skip


async def handle_repcard_sync(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Write the run's log rows and the first entity's ``plan`` (once per run)."""
    from services.syncer.repcard.store import cursors

    job = event.data_as(JobEvent)
    params = job_params(job, RepCardSyncParams)
    kind, today = sync_type(params), datetime.now(UTC).date()
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await start_run(conn, job.run_id):
            return
        if await conn.fetchval("SELECT 1 FROM repcard_sync_log WHERE run_id = $1", job.run_id):
            return  # split already, by an earlier delivery of this event
        marks = await cursors(conn)
        for entity in ENTITIES:
            skipped = bool(getattr(params, entity.skip))
            start, end = window(kind, entity, params, marks.get(entity.name), today)
            await conn.execute(
                """
                INSERT INTO repcard_sync_log
                    (run_id, entity_type, sync_type, status, from_date, to_date,
                     started_at, completed_at)
                VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END,
                        CASE WHEN $7 THEN now() END)
                """,
                job.run_id, entity.name, kind, "skipped" if skipped else "pending",
                start, end, skipped,
            )  # fmt: skip
        await conn.execute(
            "UPDATE job_runs SET totals = totals || $2::jsonb WHERE id = $1",
            job.run_id,
            {"syncType": kind},
        )
        if not await advance(conn, job.run_id, lambda c: chunk_event(event, deps, c)):
            await finish_run(conn, job.run_id, "succeeded", {"entities": {}})
    log.info("repcard.run_started", run_id=job.run_id, sync_type=kind)


async def _fetch(
    client: RepCardClient,
    calls: list[Callable[[], Awaitable[list[Page]]]],
    counts: Counts,
    last: bool,
) -> list[dict[str, Any]]:
    """Run the calls (a few at once); a failed one is recorded (or re-raised for a queue
    retry when RepCard asked for a wait too long to sleep and attempts remain)."""
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)
    records: list[dict[str, Any]] = []

    async def one(call: Callable[[], Awaitable[list[Page]]]) -> None:
        async with gate:
            try:
                pages = await call()
            except RepCardAuthError:
                raise
            except ProviderUnavailableError as exc:
                if not last and (exc.retry_after_s or 0) > 0:
                    raise
                counts.pages_failed += 1
                counts.error = counts.error or str(exc)
            except CrmsyncError as exc:
                counts.pages_failed += 1
                counts.error = counts.error or str(exc)
            else:
                counts.requests += len(pages)
                for page in pages:
                    records.extend(page.records)

    await asyncio.gather(*(one(call) for call in calls))
    return records


async def handle_repcard_chunk(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Fetch one share of an entity, write it, count it; end the entity if last."""
    chunk = event.data_as(RepCardChunk)
    entity = BY_NAME.get(chunk.entity)
    if entity is None:
        raise InvalidEventError(f"entity: unknown RepCard entity {chunk.entity!r}")
    client: RepCardClient = deps.repcard
    plan_row = await deps.pool.fetchrow(
        "SELECT * FROM repcard_sync_log WHERE run_id = $1 AND entity_type = $2",
        chunk.run_id, entity.name,
    )  # fmt: skip
    if plan_row is None or plan_row["status"] not in ("pending", "running"):
        return  # the run or the entity has ended (e.g. stopped by a 401)
    # to_date is sent for a range only: an open window misses nothing changed since the
    # run began (to_date is still where the cursor moves on success).
    start = plan_row["from_date"]
    end = plan_row["to_date"] if plan_row["sync_type"] == "range" else None
    params = date_window(start, end) if entity.dated else {}
    if entity.name == "users":
        params = client.users_params()
    counts = Counts()
    last = delivery.is_last_attempt
    later: list[RepCardChunk] = []
    try:
        if chunk.kind == "plan" and entity.path is not None:
            first: list[Page] = []

            async def page_one() -> list[Page]:
                first.append(await client.list_page(entity.path or "", 1, params))
                return first

            records = await _fetch(client, [page_one], counts, last)
            total = first[0].total_pages if first else 1
            pages = list(range(2, total + 1))
            later = [
                RepCardChunk(run_id=chunk.run_id, entity=entity.name, kind="pages", chunk=n,
                             pages=pages[i : i + PAGES_PER_CHUNK])
                for n, i in enumerate(range(0, len(pages), PAGES_PER_CHUNK), start=1)
            ]  # fmt: skip
        elif chunk.kind == "plan":
            records = []
            ids = await _status_log_customers(deps.pool, plan_row)
            later = [
                RepCardChunk(run_id=chunk.run_id, entity=entity.name, kind="customers", chunk=n,
                             customer_ids=ids[i : i + CUSTOMERS_PER_CHUNK])
                for n, i in enumerate(range(0, len(ids), CUSTOMERS_PER_CHUNK), start=1)
            ]  # fmt: skip
        elif chunk.kind == "pages":
            path = entity.path or ""
            records = await _fetch(
                client,
                [lambda n=n: _one_page(client, path, n, params) for n in chunk.pages],  # type: ignore[misc]
                counts,
                last,
            )
        else:
            records = await _fetch(
                client,
                [lambda c=c: client.list_status_logs(c, start, end) for c in chunk.customer_ids],  # type: ignore[misc]
                counts,
                last,
            )
    except RepCardAuthError as exc:
        async with deps.pool.acquire() as conn, conn.transaction():
            if await claim_message(conn, REPCARD_CHUNKS.name, event.id):
                await fail_auth(conn, chunk.run_id, entity.name, str(exc))
        log.error("repcard.auth_refused", run_id=chunk.run_id, entity=entity.name)
        return
    counts.fetched = len(records)
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, REPCARD_CHUNKS.name, event.id):
            return
        await upsert(conn, entity, rows_of(entity, records, counts), counts)
        # The plan counts itself as one chunk of 1 + len(later).
        row = await add_counts(
            conn, chunk.run_id, entity.name, counts,
            chunks=1 + len(later) if chunk.kind == "plan" else None,
        )  # fmt: skip
        if later:
            from shared.outbox import enqueue_many

            await enqueue_many(conn, [chunk_event(event, deps, c) for c in later])
        if row["chunks_done"] >= row["chunks"]:
            await end_entity(conn, chunk.run_id, entity, lambda c: chunk_event(event, deps, c))


async def _one_page(
    client: RepCardClient, path: str, number: int, params: dict[str, str]
) -> list[Page]:
    return [await client.list_page(path, number, params)]


async def _status_log_customers(pool: asyncpg.Pool, log_row: asyncpg.Record) -> list[int]:
    """Customers whose status logs are pulled: all of them, or in an incremental run
    with a cursor those updated since it (a status change updates its customer: an
    assumption, RepCard documents neither)."""
    if log_row["sync_type"] == "incremental" and log_row["from_date"] is not None:
        rows = await pool.fetch(
            "SELECT id FROM repcard_customers WHERE updated_at >= $1::date ORDER BY id",
            log_row["from_date"],
        )
    else:
        rows = await pool.fetch("SELECT id FROM repcard_customers ORDER BY id")
    return [r["id"] for r in rows]


async def on_repcard_chunk_dead_letter(
    event: CloudEvent, delivery: Delivery, error: str, deps: SyncerDeps
) -> None:
    """Count a dead-lettered chunk as one failed page and done, so its entity ends."""
    try:
        chunk = event.data_as(RepCardChunk)
    except InvalidEventError:
        log.error("repcard.dead_chunk_without_run", error=error)
        return
    entity = BY_NAME.get(chunk.entity)
    if entity is None:
        return
    counts = Counts(
        pages_failed=1, error=f"{chunk.kind} chunk {chunk.chunk} dead-lettered: {error}"
    )
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, REPCARD_CHUNKS.name, event.id):
            return
        row = await add_counts(
            conn, chunk.run_id, entity.name, counts, chunks=1 if chunk.kind == "plan" else None
        )
        if row["chunks_done"] >= row["chunks"]:
            await end_entity(conn, chunk.run_id, entity, lambda c: chunk_event(event, deps, c))
