"""``syncer.jobs.enrollments_expire``: the daily membership expiry (W2's other half).

In one transaction: every ``active`` enrolment whose ``expires_at`` has passed
becomes ``expired``; a customer with no active enrolment left loses ``is_member``;
each expired enrolment bumps its customer's ``membership_version`` and gets a
``cancel_membership`` provider action at that version (row and outbox event, via
:func:`queue_action`); the provider-action handler then makes Shopify (no tier tag)
or Commerce7 (no active club membership) equal to the customer's enrolments.
The run row is finished in the same transaction, so a redelivered event finds it
``succeeded`` and does nothing.
"""

from __future__ import annotations

import asyncpg
import structlog
from pydantic import ValidationError

from services.syncer.deps import SyncerDeps
from services.syncer.memberships import bump_version, queue_action
from shared.consumer import Delivery
from shared.errors import InvalidEventError, PermanentError
from shared.events import CloudEvent, describe_validation_error
from shared.jobs import EnrollmentsExpireParams, JobEvent
from shared.runs import finish_run, record_run_error, start_run

log = structlog.get_logger(__name__)


async def expire_enrolments(
    conn: asyncpg.Connection,
    *,
    max_attempts: int,
    source: str,
    correlation_id: str | None,
) -> dict[str, int]:
    """Expire what is due now (call inside a transaction).

    Returns:
        totals: ``expired`` enrolments, ``membersCleared`` customers,
        ``cancellationsQueued`` provider actions (0 for one queued before).
    """
    # Customers first, in id order, as the order handler locks them (customer, then
    # enrolment): an order arriving meanwhile waits instead of deadlocking.
    customer_ids = [
        r["id"]
        for r in await conn.fetch(
            """
            SELECT id FROM customers WHERE id IN (
                SELECT customer_id FROM enrolments
                WHERE status = 'active' AND expires_at <= now())
            ORDER BY id FOR UPDATE
            """
        )
    ]
    if not customer_ids:
        return {"expired": 0, "membersCleared": 0, "cancellationsQueued": 0}
    # Re-checked under the lock: an order may have extended one in the meantime.
    expired = await conn.fetch(
        """
        UPDATE enrolments e SET status = 'expired', ended_at = now(), updated_at = now()
        FROM customers c
        WHERE c.id = e.customer_id AND e.customer_id = ANY($1::bigint[])
          AND e.status = 'active' AND e.expires_at <= now()
        RETURNING e.id, e.customer_id, e.tier_id, c.provider
        """,
        customer_ids,
    )
    cleared = await conn.fetch(
        """
        UPDATE customers c SET is_member = false, updated_at = now()
        WHERE c.id = ANY($1::bigint[]) AND c.is_member AND NOT EXISTS (
            SELECT 1 FROM enrolments e WHERE e.customer_id = c.id AND e.status = 'active')
        RETURNING c.id
        """,
        customer_ids,
    )
    queued = 0
    for row in expired:
        action_id = await queue_action(
            conn,
            kind="cancel_membership",
            provider=row["provider"],
            customer_id=row["customer_id"],
            enrolment_id=row["id"],
            tier_id=row["tier_id"],
            previous_enrolment_id=None,
            payload={},
            max_attempts=max_attempts,
            membership_version=await bump_version(conn, row["customer_id"]),
            source=source,
            correlation_id=correlation_id,
        )
        if action_id is not None:
            queued += 1
    return {"expired": len(expired), "membersCleared": len(cleared), "cancellationsQueued": queued}


async def handle_enrollments_expire(
    event: CloudEvent, delivery: Delivery, deps: SyncerDeps
) -> None:
    """Run one ``enrollments.expire`` run and record it on its ``job_runs`` row.

    Idempotent by the run row: a finished run is never run again. On failure the
    row keeps the error (``failed`` on the last attempt) and the error propagates,
    so the consumer wrapper retries or dead-letters the event.

    Raises:
        InvalidEventError: the event's data or parameters do not validate.
        asyncpg.PostgresError: retried by the consumer wrapper.
    """
    job = event.data_as(JobEvent)
    structlog.contextvars.bind_contextvars(run_id=job.run_id, job=job.job)
    try:
        EnrollmentsExpireParams.model_validate(job.params)
    except ValidationError as exc:
        await finish_run(deps.pool, job.run_id, "failed", error=describe_validation_error(exc))
        raise InvalidEventError(describe_validation_error(exc)) from exc
    if not await start_run(deps.pool, job.run_id):
        log.info("job.run_already_finished")
        return
    try:
        async with deps.pool.acquire() as conn, conn.transaction():
            totals = await expire_enrolments(
                conn,
                max_attempts=deps.settings.action_max_attempts,
                source=deps.settings.source,
                correlation_id=event.correlationid,
            )
            await finish_run(conn, job.run_id, "succeeded", totals)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PermanentError) or delivery.is_last_attempt:
            await finish_run(deps.pool, job.run_id, "failed", error=error)
        else:
            await record_run_error(deps.pool, job.run_id, error)
        raise
    log.info("job.run_succeeded", **totals)
