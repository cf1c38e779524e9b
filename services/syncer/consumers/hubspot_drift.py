"""``syncer.jobs.hubspot_drift_check``: compare HubSpot's credit balances with Postgres.

The comparison is :mod:`services.syncer.hubspot.drift`. The run row shows progress
after every batch and ends with ``{"checked", "equal", "drifted", "missing",
"pending", "repairsQueued", "drifts": [first 20]}``; ``crmsync_drift_records{kind}``
holds the last run's counts. With ``repair=true`` every drifted or missing contact
gets a push event through the transactional outbox (``hubspot.contact.push``, the
same event a credit change queues), so the repair is durable and coalesced like any
push; the push sends Postgres's current balances. A run HubSpot refuses outright (bad
token, daily limit) ends ``failed`` with why; 429 / 5xx are retried by the client, then
the run's event is retried.
"""

from __future__ import annotations

import structlog
from prometheus_client import Gauge

from services.syncer.deps import SyncerDeps
from services.syncer.hubspot.drift import DriftTotals, check_page, repair_ids
from shared.consumer import Delivery
from shared.errors import ProviderRejectedError, QuotaExhaustedError
from shared.events import CloudEvent
from shared.jobs import HubSpotDriftCheckParams, JobEvent
from shared.messages.credits import CONTACT_PUSH, ContactPush
from shared.outbox import enqueue_many
from shared.runs import finish_run, job_params, record_run_error, start_run

log = structlog.get_logger(__name__)

DRIFT_RECORDS = Gauge(
    "crmsync_drift_records",
    "Contacts of the last HubSpot drift check, by kind (checked, equal, drifted, missing,"
    " pending).",
    ["kind"],
)


async def handle_hubspot_drift_check(
    event: CloudEvent, delivery: Delivery, deps: SyncerDeps
) -> None:
    job = event.data_as(JobEvent)
    params = job_params(job, HubSpotDriftCheckParams)
    if not await start_run(deps.pool, job.run_id):
        log.info("drift_check.already_finished", run_id=job.run_id)
        return
    totals = DriftTotals()
    after = 0
    try:
        while params.max_contacts is None or totals.checked + totals.pending < params.max_contacts:
            limit = params.batch_size
            if params.max_contacts is not None:
                limit = min(limit, params.max_contacts - totals.checked - totals.pending)
            last = await check_page(deps.pool, deps.hubspot, after, limit, totals)
            if last is None:
                break
            after = last
            await deps.pool.execute(
                "UPDATE job_runs SET totals = $2::jsonb WHERE id = $1", job.run_id, totals.as_dict()
            )
    except (ProviderRejectedError, QuotaExhaustedError) as exc:
        await finish_run(deps.pool, job.run_id, "failed", totals.as_dict(), error=str(exc))
        log.error("drift_check.stopped", run_id=job.run_id, error=str(exc))
        return
    except Exception as exc:
        await record_run_error(deps.pool, job.run_id, f"{type(exc).__name__}: {exc}")
        raise
    ids = repair_ids(totals) if params.repair else []
    async with deps.pool.acquire() as conn, conn.transaction():
        await enqueue_many(
            conn,
            [
                CloudEvent.create(
                    id=f"drift-repair-{job.run_id}-{contact_id}",
                    type=CONTACT_PUSH,
                    source="urn:crmsync:syncer",
                    subject=str(contact_id),
                    data=ContactPush(contact_id=contact_id),
                )
                for contact_id in ids
            ],
        )
        totals.repairs_queued = len(ids)
        await finish_run(conn, job.run_id, "succeeded", totals.as_dict())
    for kind in ("checked", "equal", "drifted", "missing", "pending"):
        DRIFT_RECORDS.labels(kind=kind).set(getattr(totals, kind))
    log.info("drift_check.finished", run_id=job.run_id, **{
        k: v for k, v in totals.as_dict().items() if k != "drifts"
    })  # fmt: skip
