"""W2: decide what a paid order does to the customer's tier, and queue provider actions.

All of it runs inside the order handler's transaction, with the customer's row
locked, so two orders of one customer handled by two replicas at once are decided
one after the other. Every change of a customer's enrolments bumps the customer's
``membership_version`` in the same transaction and queues a provider action at that
version: a row in ``provider_actions`` plus an outbox event, which reach the provider
only if this transaction commits. The action then makes the provider equal to the
customer's enrolment at the time it runs (``consumers/membership_actions.py``).

The order path decides with one read and writes with one statement
(:func:`apply_order`, :mod:`services.syncer.enrolment_changes`); :func:`bump_version`
and :func:`queue_action` are the same writes one at a time, for the expiry job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from services.syncer.enrolment_changes import EnrolmentChange, apply_change
from services.syncer.store import StoredOrder
from shared.events import CloudEvent
from shared.messages.memberships import MembershipActionRequested, membership_action_type
from shared.outbox import enqueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    """What an order did: ``enrolled``, ``upgraded``, ``extended``, ``kept`` or ``none``."""

    outcome: str
    enrolment_id: int | None = None
    action_id: int | None = None


async def bump_version(conn: asyncpg.Connection, customer_id: int) -> int:
    """The customer's next ``membership_version`` (call in the transaction that changes
    its enrolments)."""
    version: int = await conn.fetchval(
        """
        UPDATE customers SET membership_version = membership_version + 1, updated_at = now()
        WHERE id = $1 RETURNING membership_version
        """,
        customer_id,
    )
    return version


async def queue_action(
    conn: asyncpg.Connection,
    *,
    kind: str,
    provider: str,
    customer_id: int,
    enrolment_id: int,
    tier_id: int,
    previous_enrolment_id: int | None,
    payload: dict[str, Any],
    max_attempts: int,
    membership_version: int,
    source: str,
    correlation_id: str | None,
) -> int | None:
    """Insert a ``pending`` provider action at ``membership_version`` and its outbox
    event; None if it existed. ``enrolment_changes.CHANGE_SQL`` writes the same rows
    in SQL (``tests/syncer/test_order_statements.py`` compares the events)."""
    action_id: int | None = await conn.fetchval(
        """
        INSERT INTO provider_actions (kind, provider, customer_id, enrolment_id, tier_id,
                                      previous_enrolment_id, payload, max_attempts,
                                      membership_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (enrolment_id, kind) DO NOTHING RETURNING id
        """,
        kind,
        provider,
        customer_id,
        enrolment_id,
        tier_id,
        previous_enrolment_id,
        payload,
        max_attempts,
        membership_version,
    )
    if action_id is None:
        return None
    data = MembershipActionRequested(action_id=action_id, provider=provider, kind=kind)
    await enqueue(
        conn,
        CloudEvent.create(
            id=f"provider-action-{action_id}",
            type=membership_action_type(provider),
            source=source,
            subject=str(action_id),
            correlationid=correlation_id,
            data=data,
        ),
    )
    return action_id


# $1 the order (locked since its upsert), $2 its customer. The order is marked
# evaluated whatever follows; the customer is locked before its active enrolment.
_DECIDE_SQL = """
WITH marked AS (
    UPDATE orders o SET membership_evaluated_at = now() WHERE o.id = $1
    RETURNING o.currency, order_net_qualifying_minor(o) AS net_minor
), customer AS (
    SELECT id FROM customers WHERE id = $2 FOR UPDATE
), tier AS (
    SELECT t.id, t.name, t.rank, t.duration_days,
           now() + make_interval(days => t.duration_days) AS expires_at
    FROM tiers t JOIN marked ON t.currency = marked.currency
    WHERE t.qualifying_total_minor <= marked.net_minor
    ORDER BY t.rank DESC LIMIT 1
), active AS (
    SELECT e.id, e.tier_id, t.rank
    FROM customer JOIN enrolments e ON e.customer_id = customer.id AND e.status = 'active'
    JOIN tiers t ON t.id = e.tier_id
    FOR UPDATE OF e
)
SELECT tier.id AS tier_id, tier.name AS tier_name, tier.rank AS tier_rank,
       tier.duration_days, tier.expires_at,
       active.id AS active_id, active.tier_id AS active_tier_id, active.rank AS active_rank
FROM customer LEFT JOIN tier ON true LEFT JOIN active ON true
"""


async def apply_order(
    conn: asyncpg.Connection,
    *,
    order: StoredOrder,
    customer_id: int,
    provider: str,
    provider_context: dict[str, Any],
    max_attempts: int,
    source: str,
    correlation_id: str | None,
) -> Decision:
    """Enrol, upgrade or extend for one paid order, once (the order row remembers).

    Two statements at most, in the caller's transaction, which holds the customer's
    and the order's rows since their upserts: one marks the order evaluated and reads
    the tier it earns with the customer's active enrolment (locking the customer,
    then the enrolment); one writes the change (:mod:`services.syncer.enrolment_changes`),
    or extends the enrolment. The read is a statement of its own after the upsert, so
    its snapshot holds whatever the previous holder of the customer's lock committed.

    Returns:
        the decision; ``none`` when no tier qualifies or the order was seen before.
    """
    if not order.paid or order.evaluated:
        return Decision("none")
    seen = await conn.fetchrow(_DECIDE_SQL, order.id, customer_id)
    if seen is None or seen["tier_id"] is None:
        return Decision("none")
    active_id = seen["active_id"]
    if active_id is not None and seen["active_tier_id"] == seen["tier_id"]:
        await conn.execute(
            """
            UPDATE enrolments
            SET expires_at = GREATEST(expires_at, now() + make_interval(days => $2)),
                updated_at = now()
            WHERE id = $1
            """,
            active_id,
            seen["duration_days"],
        )
        return Decision("extended", active_id)
    if active_id is not None and seen["active_rank"] > seen["tier_rank"]:
        return Decision("kept", active_id)
    change = await apply_change(
        conn,
        EnrolmentChange(
            customer_id=customer_id,
            kind="upgrade_membership" if active_id else "add_membership",
            provider=provider,
            end_id=active_id,
            end_status="upgraded",
            tier_id=seen["tier_id"],
            expires_at=seen["expires_at"],
            source_order_id=order.id,
            is_member=True,
            payload=provider_context,
        ),
        max_attempts=max_attempts,
        source=source,
        correlation_id=correlation_id,
    )
    outcome = "upgraded" if active_id else "enrolled"
    log.info("membership." + outcome, tier=seen["tier_name"], enrolment_id=change.enrolment_id)
    return Decision(outcome, change.enrolment_id, change.action_id)
