"""``syncer.membership_actions.<provider>``: apply one provider action.

The ``provider_actions`` row is the source of truth and the idempotency guard: a
``completed`` or ``failed`` action is never called again, whatever the broker
redelivers. The row shows every step: ``pending`` → ``processing`` → ``completed``,
or back to ``pending`` with ``last_error`` and ``next_retry_at`` after a transient
failure, or ``failed`` with ``last_error`` when the provider refused for good or the
attempts ran out (the message then sits in ``<queue>.dead``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.providers import ActionContext, apply_commerce7, apply_shopify
from shared.consumer import Delivery
from shared.errors import PermanentError, TransientError
from shared.events import CloudEvent
from shared.messages.memberships import MembershipActionRequested
from shared.metrics import PROVIDER_ACTIONS

log = structlog.get_logger(__name__)

_CONTEXT_SQL = """
SELECT a.*, c.tenant, c.external_id AS customer_external_id,
       t.shopify_tag, t.commerce7_club_id, e.started_at, e.provider_ref,
       pt.shopify_tag AS previous_tag, pt.commerce7_club_id AS previous_club_id,
       pe.provider_ref AS previous_provider_ref
FROM provider_actions a
JOIN customers c ON c.id = a.customer_id
JOIN tiers t ON t.id = a.tier_id
JOIN enrolments e ON e.id = a.enrolment_id
LEFT JOIN enrolments pe ON pe.id = a.previous_enrolment_id
LEFT JOIN tiers pt ON pt.id = pe.tier_id
WHERE a.id = $1
"""


async def _claim(pool: asyncpg.Pool, action_id: int) -> asyncpg.Record | None:
    """Mark the action ``processing`` and count the attempt; None if already done."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            """
            UPDATE provider_actions SET status = 'processing', attempts = attempts + 1,
                   next_retry_at = NULL, updated_at = now()
            WHERE id = $1 AND status IN ('pending', 'processing') RETURNING id
            """,
            action_id,
        )
        if claimed is None:
            return None
        return await conn.fetchrow(_CONTEXT_SQL, action_id)


def _context(row: asyncpg.Record) -> ActionContext:
    return ActionContext(
        kind=row["kind"],
        provider=row["provider"],
        tenant=row["tenant"],
        customer_external_id=row["customer_external_id"],
        tier_tag=row["shopify_tag"],
        tier_club_id=row["commerce7_club_id"],
        signup_date=row["started_at"],
        previous_tag=row["previous_tag"],
        previous_club_id=row["previous_club_id"],
        previous_provider_ref=row["previous_provider_ref"],
        provider_ref=row["provider_ref"],
        payload=row["payload"] or {},
    )


async def handle_membership_action(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Call the provider for one action and record the outcome on its row.

    Raises:
        PermanentError: the provider refused for good (row ``failed``).
        TransientError: 429 / 5xx / timeout; row back to ``pending`` with
            ``next_retry_at``, or ``failed`` on the last attempt.
    """
    request: MembershipActionRequested = event.data_as(MembershipActionRequested)
    structlog.contextvars.bind_contextvars(action_id=request.action_id, kind=request.kind)
    row = await _claim(deps.pool, request.action_id)
    if row is None:
        log.info("provider_action.already_done")
        return
    ctx = _context(row)
    try:
        if ctx.provider == "shopify":
            provider_ref = await apply_shopify(deps.shopify, ctx)
        else:
            provider_ref = await apply_commerce7(
                deps.commerce7, ctx, deps.settings.commerce7_cancellation_reason
            )
    except PermanentError as exc:
        await _fail(deps.pool, request.action_id, str(exc))
        PROVIDER_ACTIONS.labels(ctx.provider, ctx.kind, "failed").inc()
        raise
    except Exception as exc:  # transient, or unexpected: retried while attempts last
        retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
        if delivery.is_last_attempt:
            await _fail(deps.pool, request.action_id, f"{exc} (after {row['attempts']} attempts)")
            PROVIDER_ACTIONS.labels(ctx.provider, ctx.kind, "failed").inc()
        else:
            delay = delivery.next_retry_delay_s(retry_after)
            await deps.pool.execute(
                """
                UPDATE provider_actions SET status = 'pending', last_error = $2,
                       next_retry_at = $3, updated_at = now() WHERE id = $1
                """,
                request.action_id,
                str(exc)[:2000],
                datetime.now(UTC) + timedelta(seconds=delay),
            )
            PROVIDER_ACTIONS.labels(ctx.provider, ctx.kind, "retried").inc()
        raise
    async with deps.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            UPDATE provider_actions SET status = 'completed', completed_at = now(),
                   last_error = NULL, next_retry_at = NULL, updated_at = now() WHERE id = $1
            """,
            request.action_id,
        )
        if provider_ref is not None:
            await conn.execute(
                "UPDATE enrolments SET provider_ref = $2, updated_at = now() WHERE id = $1",
                row["enrolment_id"],
                provider_ref,
            )
    PROVIDER_ACTIONS.labels(ctx.provider, ctx.kind, "completed").inc()
    log.info("provider_action.completed", provider=ctx.provider)


async def _fail(pool: asyncpg.Pool, action_id: int, error: str) -> None:
    await pool.execute(
        """
        UPDATE provider_actions SET status = 'failed', last_error = $2, next_retry_at = NULL,
               updated_at = now() WHERE id = $1
        """,
        action_id,
        error[:2000],
    )
