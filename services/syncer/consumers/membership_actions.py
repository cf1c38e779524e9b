"""``syncer.membership_actions.<provider>``: make the provider equal to Postgres for one customer.

An action names a customer; running it makes that customer's state at the provider
equal to what Postgres says *now* (:mod:`services.syncer.providers`), whatever its
kind, so actions that run late, twice or out of order all end in the same state.

1. **Claim** (one short transaction): the action must still be open; the customer's
   lease (:mod:`services.syncer.leases`) is taken with one conditional write; the
   action becomes ``processing`` (``attempts + 1``, ``claimed_by``); the desired state
   and its ``membership_version`` V are read. A busy lease sends the message back
   after ``provider_lease_retry_s`` with the same attempt number: nothing is counted,
   nothing fails.
2. **Converge** with no database connection held, while :func:`~services.syncer.leases.hold`
   renews the lease.
3. **Complete** (one short transaction, shielded from cancellation): every open action
   of the customer queued at a version <= V becomes ``completed`` (the provider now
   reflects them all), the kept Commerce7 membership id is recorded on the enrolment,
   and the lease is released.

A crash anywhere leaves the action ``processing`` under a lease that expires; the
redelivered message waits for the expiry, then converges again (reading first, so it
writes nothing that is already right). Transient provider failures put the action
back to ``pending`` with ``last_error`` and ``next_retry_at`` (retried after 2^attempt
units); a permanent one, or the last attempt, makes it ``failed`` and dead-letters the
message. A ``completed`` or ``failed`` action is never run again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.desired import DesiredMembership, read_desired
from services.syncer.leases import Lease, LeaseLostError, hold, new_owner, release, still_held
from services.syncer.leases import try_acquire as try_acquire_lease
from services.syncer.providers import Convergence, converge_commerce7, converge_shopify
from shared.consumer import Delivery
from shared.errors import PermanentError, TransientError
from shared.events import CloudEvent
from shared.messages.memberships import MembershipActionRequested
from shared.metrics import PROVIDER_ACTIONS

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Claim:
    """A claimed action: its lease, attempt number and the state to converge to."""

    action_id: int
    kind: str
    provider: str
    attempts: int
    max_attempts: int
    lease: Lease
    desired: DesiredMembership


async def claim(pool: asyncpg.Pool, action_id: int, lease_s: float) -> Claim | str:
    """Claim the action and its customer's lease in one short transaction.

    Returns:
        the :class:`Claim`, or ``"done"`` (completed, failed or unknown action) or
        ``"busy"`` (another claim holds the customer's unexpired lease).
    """
    async with pool.acquire() as conn, conn.transaction():
        action = await conn.fetchrow(
            "SELECT customer_id, status, kind, provider, max_attempts"
            " FROM provider_actions WHERE id = $1",
            action_id,
        )
        if action is None or action["status"] in ("completed", "failed"):
            return "done"
        lease = Lease(action["customer_id"], new_owner(), lease_s)
        if not await try_acquire_lease(conn, lease):
            return "busy"
        attempts = await conn.fetchval(
            """
            UPDATE provider_actions SET status = 'processing', attempts = attempts + 1,
                   claimed_by = $2, next_retry_at = NULL, updated_at = now()
            WHERE id = $1 AND status IN ('pending', 'processing') RETURNING attempts
            """,
            action_id,
            lease.owner,
        )
        if attempts is None:  # completed by the lease's previous holder meanwhile
            await release(conn, lease)
            return "done"
        desired = await read_desired(conn, action["customer_id"])
    return Claim(
        action_id,
        action["kind"],
        action["provider"],
        attempts,
        action["max_attempts"],
        lease,
        desired,
    )


async def complete(pool: asyncpg.Pool, claimed: Claim, result: Convergence) -> list[int]:
    """Complete every open action of the customer that version V covers; release the lease.

    Returns:
        the ids completed (the claimed one among them).

    Raises:
        LeaseLostError: the lease expired or was taken over; nothing is written.
    """
    desired = claimed.desired
    async with pool.acquire() as conn, conn.transaction():
        if not await still_held(conn, claimed.lease):
            raise LeaseLostError(f"lease of customer {desired.customer_id} lost")
        ids = [
            r["id"]
            for r in await conn.fetch(
                """
                UPDATE provider_actions SET status = 'completed', completed_at = now(),
                       last_error = NULL, next_retry_at = NULL, updated_at = now()
                WHERE customer_id = $1 AND status IN ('pending', 'processing')
                  AND membership_version <= $2
                RETURNING id
                """,
                desired.customer_id,
                desired.version,
            )
        ]
        if result.provider_ref and desired.enrolment_id is not None:
            await conn.execute(
                "UPDATE enrolments SET provider_ref = $2, updated_at = now()"
                " WHERE id = $1 AND provider_ref IS DISTINCT FROM $2",
                desired.enrolment_id,
                result.provider_ref,
            )
        await release(conn, claimed.lease)
    return ids


async def _set_status(
    pool: asyncpg.Pool,
    claimed: Claim,
    status: str,
    error: str,
    next_retry_at: datetime | None = None,
) -> None:
    """The action ``pending`` (with its retry time) or ``failed``; the lease released."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            UPDATE provider_actions SET status = $2, last_error = $3, next_retry_at = $4,
                   updated_at = now()
            WHERE id = $1 AND status = 'processing'
            """,
            claimed.action_id,
            status,
            error[:2000],
            next_retry_at,
        )
        await release(conn, claimed.lease)


async def _converge(deps: SyncerDeps, desired: DesiredMembership) -> Convergence:
    if desired.provider == "shopify":
        return await converge_shopify(deps.shopify, desired)
    return await converge_commerce7(
        deps.commerce7, desired, deps.settings.commerce7_cancellation_reason
    )


async def _come_back_soon(deps: SyncerDeps, event: CloudEvent, delivery: Delivery) -> None:
    # The same attempt number: waiting for a lease is not a provider attempt.
    await deps.broker.publish_retry(
        deps.settings.provider_lease_retry_s, delivery.queue, event, attempt=delivery.attempt
    )


async def handle_membership_action(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Converge the action's customer at its provider and record the outcome.

    Raises:
        PermanentError: the provider refused for good, or the last attempt failed
            (row ``failed``; the message is dead-lettered).
        TransientError: 429 / 5xx / timeout; row back to ``pending`` with
            ``next_retry_at`` (the consumer wrapper schedules the retry).
    """
    request = event.data_as(MembershipActionRequested)
    structlog.contextvars.bind_contextvars(action_id=request.action_id, kind=request.kind)
    claimed = await claim(deps.pool, request.action_id, deps.settings.provider_lease_s)
    if claimed == "done":
        log.info("provider_action.already_done")
        return
    if claimed == "busy":
        log.info("provider_action.lease_busy", retry_in_s=deps.settings.provider_lease_retry_s)
        PROVIDER_ACTIONS.labels(request.provider, request.kind, "lease_busy").inc()
        await _come_back_soon(deps, event, delivery)
        return
    assert isinstance(claimed, Claim)
    structlog.contextvars.bind_contextvars(customer_id=claimed.desired.customer_id)
    try:
        result = await hold(deps.pool, claimed.lease, lambda: _converge(deps, claimed.desired))
        completed = await asyncio.shield(complete(deps.pool, claimed, result))
    except LeaseLostError as exc:
        await _lease_lost(deps, claimed, event, delivery, exc)
        return
    except PermanentError as exc:
        await asyncio.shield(_set_status(deps.pool, claimed, "failed", str(exc)))
        PROVIDER_ACTIONS.labels(claimed.provider, claimed.kind, "failed").inc()
        raise
    except Exception as exc:  # transient, or unexpected: retried while attempts last
        await _retry_or_fail(deps, claimed, delivery, exc)
        raise
    PROVIDER_ACTIONS.labels(claimed.provider, claimed.kind, "completed").inc()
    log.info(
        "provider_action.completed",
        provider=claimed.provider,
        tier=claimed.desired.tier_name,
        version=claimed.desired.version,
        calls=result.calls,
        changes=result.changes,
        completed=len(completed),
    )


async def _lease_lost(
    deps: SyncerDeps, claimed: Claim, event: CloudEvent, delivery: Delivery, exc: Exception
) -> None:
    """Another claim took the customer over: leave the action to it, come back soon."""
    log.warning("provider_action.lease_lost", error=str(exc))
    await deps.pool.execute(
        "UPDATE provider_actions SET status = 'pending', last_error = $2, updated_at = now()"
        " WHERE id = $1 AND status = 'processing' AND claimed_by = $3",
        claimed.action_id,
        str(exc),
        claimed.lease.owner,
    )
    await _come_back_soon(deps, event, delivery)


async def _retry_or_fail(
    deps: SyncerDeps, claimed: Claim, delivery: Delivery, exc: Exception
) -> None:
    """Record a failed attempt: ``pending`` until the next one, ``failed`` after the last.

    Raises:
        PermanentError: the attempts are spent (so the wrapper dead-letters at once).
    """
    error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TransientError) else str(exc)
    if claimed.attempts >= claimed.max_attempts or delivery.is_last_attempt:
        final = f"{error} (after {claimed.attempts} attempts)"
        await asyncio.shield(_set_status(deps.pool, claimed, "failed", final))
        PROVIDER_ACTIONS.labels(claimed.provider, claimed.kind, "failed").inc()
        raise PermanentError(final) from exc
    retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
    delay_s = delivery.next_retry_delay_s(retry_after)
    next_retry_at = datetime.now(UTC) + timedelta(seconds=delay_s)
    await asyncio.shield(_set_status(deps.pool, claimed, "pending", error, next_retry_at))
    PROVIDER_ACTIONS.labels(claimed.provider, claimed.kind, "retried").inc()
