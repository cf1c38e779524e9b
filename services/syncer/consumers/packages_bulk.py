"""W1 daily bulk run, shared by every syncer replica.

``syncer.jobs.packages_bulk_sync`` (the job's event): pick the profiles (all, or those
never synced with ``onlyNewProfiles``, at most ``maxProfiles``), split them into
chunks of ``batchSize`` and write one ``packages.chunk`` event per chunk to the
outbox, in the transaction that starts the run. Every replica then takes chunks off
``syncer.packages.chunks``.

Each chunk syncs its profiles one by one (one profile's failure never stops the
chunk), then adds its counts to the run row in one transaction with its idempotency
claim (a redelivered chunk never counts twice). The chunk that brings ``chunksDone``
to ``chunks`` finishes the run. A chunk that cannot reach the CRM is retried; on its
last attempt its remaining profiles count as failed, so one chunk never stops the run.
Each profile's CRM read holds no connection to crmsync's database (``sync_profile``).

A chunk that is dead-lettered all the same (its data is invalid, its handler kept
failing or running past its deadline) is counted by :func:`on_chunk_dead_letter`: its
profiles as failed, the chunk as done, its error in ``errors`` and on the run, so the
run still ends, ``failed`` (``deadChunks`` > 0), when its last chunk is done. Invalid
job parameters end the run ``failed`` at once (``shared.runs.fail_dead_run``).

Run totals: ``totalProfiles``, ``chunks``, ``chunksDone``, ``successfulProfiles``,
``failedProfiles``, ``unmatchedProfiles``, ``totalPackages``, ``errors`` (the first 20),
``deadChunks`` (when any), ``durationS``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import asyncpg
import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.packages.profiles import ProfileData
from services.syncer.packages.sync import sync_profile
from shared.consumer import Delivery
from shared.db import claim_message
from shared.errors import InvalidEventError, TransientError
from shared.events import CloudEvent
from shared.jobs import JobEvent, PackagesBulkSyncParams
from shared.messages.profiles import PACKAGES_CHUNK, PackagesChunk
from shared.outbox import enqueue_many
from shared.queues import PACKAGES_CHUNKS
from shared.runs import add_totals, finish_run, job_params, start_run

log = structlog.get_logger(__name__)

MAX_ERRORS = 20


async def handle_packages_bulk_sync(
    event: CloudEvent, delivery: Delivery, deps: SyncerDeps
) -> None:
    """Split the run into chunk messages (once, however often the event comes)."""
    job = event.data_as(JobEvent)
    params = job_params(job, PackagesBulkSyncParams)
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await start_run(conn, job.run_id):
            return
        if await conn.fetchval("SELECT totals ? 'chunks' FROM job_runs WHERE id = $1", job.run_id):
            return  # split already, by an earlier delivery of this event
        profiles = [
            r["profile_id"]
            for r in await conn.fetch(
                """
                SELECT p.profile_id FROM profiles p
                LEFT JOIN crm_mappings m ON m.profile_id = p.profile_id
                WHERE NOT $1 OR m.synced_at IS NULL
                ORDER BY p.profile_id LIMIT $2
                """,
                params.only_new_profiles,
                params.max_profiles,
            )
        ]
        size = params.batch_size
        chunks = [profiles[i : i + size] for i in range(0, len(profiles), size)]
        totals = {
            "totalProfiles": len(profiles), "chunks": len(chunks), "chunksDone": 0,
            "successfulProfiles": 0, "failedProfiles": 0, "unmatchedProfiles": 0,
            "totalPackages": 0, "errors": [],
        }  # fmt: skip
        if not chunks:
            await finish_run(conn, job.run_id, "succeeded", {**totals, "durationS": 0})
            return
        await conn.execute(
            "UPDATE job_runs SET totals = totals || $2::jsonb WHERE id = $1", job.run_id, totals
        )
        events = [
            CloudEvent.create(
                id=f"packages-chunk-{job.run_id}-{number}", type=PACKAGES_CHUNK,
                source=deps.settings.source, subject=str(job.run_id),
                correlationid=event.correlationid,
                data=PackagesChunk(
                    run_id=job.run_id, chunk=number, chunks=len(chunks), profile_ids=profile_ids
                ),
            )
            for number, profile_ids in enumerate(chunks, start=1)
        ]  # fmt: skip
        await enqueue_many(conn, events)
    log.info("packages_bulk.split", run_id=job.run_id, profiles=len(profiles), chunks=len(chunks))


async def handle_packages_chunk(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Sync a chunk's profiles; add its counts to the run; finish the run if last."""
    chunk = event.data_as(PackagesChunk)
    ok = failed = unmatched = packages = 0
    errors: list[str] = []
    for profile_id in chunk.profile_ids:
        try:
            result = await sync_profile(
                deps.pool, deps.crm, ProfileData(profile_id), now=datetime.now(UTC), create=False
            )
        except TransientError as exc:
            if not delivery.is_last_attempt:
                raise  # the CRM is away: retry the chunk (syncs are idempotent)
            failed += 1
            errors.append(f"{profile_id}: {exc}")
        except Exception as exc:  # this profile's data; the others go on
            log.warning("packages_bulk.profile_failed", profile_id=profile_id, error=str(exc))
            failed += 1
            errors.append(f"{profile_id}: {type(exc).__name__}: {exc}")
        else:  # an unmatched profile synced nothing: counted apart, not as a success
            if result.unmatched:
                unmatched += 1
            else:
                ok += 1
            packages += result.packages
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, PACKAGES_CHUNKS.name, event.id):
            return
        await add_totals(
            conn,
            chunk.run_id,
            {"successfulProfiles": ok, "failedProfiles": failed, "unmatchedProfiles": unmatched,
             "totalPackages": packages, "chunksDone": 1},
        )  # fmt: skip
        if errors:
            await _add_errors(conn, chunk.run_id, errors)
        await _finish_if_done(conn, chunk.run_id)


async def _add_errors(conn: asyncpg.Connection, run_id: int, errors: list[str]) -> None:
    await conn.execute(
        """
        UPDATE job_runs SET totals = jsonb_set(totals, '{errors}', (
            SELECT coalesce(jsonb_agg(e), '[]'::jsonb) FROM (
                SELECT e FROM jsonb_array_elements(
                    coalesce(totals -> 'errors', '[]'::jsonb) || $2::jsonb) AS e
                LIMIT $3) AS kept))
        WHERE id = $1
        """,
        run_id,
        [e[:500] for e in errors],
        MAX_ERRORS,
    )


async def on_chunk_dead_letter(
    event: CloudEvent, delivery: Delivery, error: str, deps: SyncerDeps
) -> None:
    """Count a dead-lettered chunk: its profiles failed, the chunk done, the run ``failed``
    once its last chunk is done. Idempotent by the chunk's event id (the same claim as
    the handler's, so a chunk is counted once whichever way it ends)."""
    try:
        chunk = event.data_as(PackagesChunk)
    except InvalidEventError:
        log.error("packages_bulk.dead_chunk_without_run", error=error)
        return
    message = f"chunk {chunk.chunk}/{chunk.chunks} dead-lettered: {error}"
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, PACKAGES_CHUNKS.name, event.id):
            return
        await add_totals(
            conn,
            chunk.run_id,
            {"failedProfiles": len(chunk.profile_ids), "chunksDone": 1, "deadChunks": 1},
        )
        await _add_errors(conn, chunk.run_id, [message])
        await conn.execute(
            "UPDATE job_runs SET error = coalesce(error, $2) WHERE id = $1 AND status = 'running'",
            chunk.run_id,
            message[:2000],
        )
        await _finish_if_done(conn, chunk.run_id)
    log.error("packages_bulk.chunk_dead", run_id=chunk.run_id, chunk=chunk.chunk, error=error)


async def _finish_if_done(conn: asyncpg.Connection, run_id: int) -> None:
    row = await conn.fetchrow(
        """
        SELECT (totals ->> 'chunksDone')::int >= (totals ->> 'chunks')::int AS done,
               coalesce((totals ->> 'deadChunks')::int, 0) AS dead, error,
               extract(epoch FROM now() - started_at) AS duration_s
        FROM job_runs WHERE id = $1 FOR UPDATE
        """,
        run_id,
    )
    if row is not None and row["done"]:
        status: Literal["succeeded", "failed"] = "failed" if row["dead"] else "succeeded"
        await finish_run(
            conn,
            run_id,
            status,
            {"durationS": round(float(row["duration_s"]), 3)},
            error=row["error"] if row["dead"] else None,
        )
        log.info("packages_bulk.finished", run_id=run_id, status=status)
