"""``syncer.jobs.hubspot_batch_sync``: run W4 for one job run and keep its row current.

The run row shows progress while the sync runs (totals after every batch, for
``crmsync trigger hubspot.batch_sync --wait``) and the summary at the end:
created / updated / failed per object, associations made, the first errors.
A run HubSpot refuses outright (bad token, daily limit) ends ``failed`` with why;
it is not retried, because retrying cannot help before someone acts. Invalid
parameters end the run ``failed`` at once, naming the field; a run whose every attempt
failed (or ran past ``CRMSYNC_JOB_DEADLINE_S``) ends ``failed`` when its event is
dead-lettered (``shared.runs.fail_dead_run``). One record HubSpot refuses never fails
its batch: see :mod:`services.syncer.hubspot.contacts`.
"""

from __future__ import annotations

from typing import Any

import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.hubspot.batch_sync import BatchSync, StopRun
from shared.consumer import Delivery
from shared.events import CloudEvent
from shared.jobs import HubSpotBatchSyncParams, JobEvent
from shared.runs import finish_run, job_params, record_run_error, start_run

log = structlog.get_logger(__name__)


async def handle_hubspot_batch_sync(
    event: CloudEvent, delivery: Delivery, deps: SyncerDeps
) -> None:
    job = event.data_as(JobEvent)
    params = job_params(job, HubSpotBatchSyncParams)
    if not await start_run(deps.pool, job.run_id):
        log.info("hubspot_sync.already_finished", run_id=job.run_id)
        return

    async def progress(totals: dict[str, Any]) -> None:
        await deps.pool.execute(
            "UPDATE job_runs SET totals = totals || $2::jsonb WHERE id = $1", job.run_id, totals
        )

    sync = BatchSync(
        deps.pool,
        deps.hubspot,
        deps.settings,
        on_progress=progress,
        objects=params.objects,
        batch_size=params.batch_size,
    )
    try:
        totals = await sync.run()
    except StopRun as exc:
        await finish_run(deps.pool, job.run_id, "failed", sync.totals.as_dict(), error=str(exc))
        log.error("hubspot_sync.stopped", run_id=job.run_id, error=str(exc))
        return
    except Exception as exc:
        # Retried; the last failure ends the run ``failed`` (the dead-letter hook).
        await record_run_error(deps.pool, job.run_id, f"{type(exc).__name__}: {exc}")
        raise
    await finish_run(deps.pool, job.run_id, "succeeded", totals.as_dict())
    log.info("hubspot_sync.finished", run_id=job.run_id, **totals.as_dict())
