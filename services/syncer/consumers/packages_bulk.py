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

Run totals: ``totalProfiles``, ``chunks``, ``chunksDone``, ``successfulProfiles``,
``failedProfiles``, ``unmatchedProfiles``, ``totalPackages``, ``errors`` (the first 20),
``durationS``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.packages.sync import ProfileData, sync_profile
from shared.consumer import Delivery
from shared.db import claim_message
from shared.errors import TransientError
from shared.events import CloudEvent
from shared.jobs import JobEvent, PackagesBulkSyncParams
from shared.messages.profiles import PACKAGES_CHUNK, PackagesChunk
from shared.outbox import enqueue_many
from shared.queues import PACKAGES_CHUNKS
from shared.runs import add_totals, finish_run, start_run

log = structlog.get_logger(__name__)

MAX_ERRORS = 20


async def handle_packages_bulk_sync(
    event: CloudEvent, delivery: Delivery, deps: SyncerDeps
) -> None:
    """Split the run into chunk messages (once, however often the event comes)."""
    job = event.data_as(JobEvent)
    params = PackagesBulkSyncParams.model_validate(job.params)
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
            async with deps.pool.acquire() as conn, conn.transaction():
                result = await sync_profile(
                    conn, deps.crm, ProfileData(profile_id), now=datetime.now(UTC)
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
        else:
            ok += 1
            unmatched += result.unmatched
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


async def _finish_if_done(conn: asyncpg.Connection, run_id: int) -> None:
    row = await conn.fetchrow(
        """
        SELECT (totals ->> 'chunksDone')::int >= (totals ->> 'chunks')::int AS done,
               extract(epoch FROM now() - started_at) AS duration_s
        FROM job_runs WHERE id = $1 FOR UPDATE
        """,
        run_id,
    )
    if row is not None and row["done"]:
        await finish_run(
            conn, run_id, "succeeded", {"durationS": round(float(row["duration_s"]), 3)}
        )
        log.info("packages_bulk.finished", run_id=run_id)
