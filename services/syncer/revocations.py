"""W2, issue 8 item 8: an order that earned a tier is cancelled or refunded below it.

Called by the order handler, inside its transaction, after an order row changed
(Shopify ``orders/cancelled``, ``orders/updated``, ``refunds/create`` followed by a
read of the order; a Commerce7 order ``Update``, or a refund order naming it). It is
level-triggered over what Postgres holds: whatever order the webhooks arrive in, the
decision depends only on the orders' current rows.

When the changed order is the source of the customer's active enrolment and no longer
qualifies for that tier (not paid any more, or its amount net of refunds is below the
tier's), the enrolment ends as ``revoked`` and the customer moves to the best tier
their remaining paid orders still qualify for: each such order counts for the tier its
net amount reaches, for that tier's duration from when it was first evaluated. With
none left the customer is no longer a member. Either way the membership version is
bumped and a provider action queued (``downgrade_membership`` on the new enrolment,
or ``cancel_membership`` on the revoked one), so the provider converges.
"""

from __future__ import annotations

import asyncpg
import structlog

from services.syncer.enrolment_changes import EnrolmentChange, apply_change
from services.syncer.memberships import Decision

log = structlog.get_logger(__name__)

# The best tier any of the customer's paid orders still reaches today.
_BEST_REMAINING_SQL = """
SELECT o.id AS order_id, o.provider_context, t.id AS tier_id, t.name, t.rank,
       o.membership_evaluated_at + make_interval(days => t.duration_days) AS expires_at
FROM orders o
JOIN LATERAL (
    SELECT * FROM tiers t WHERE t.currency = o.currency
      AND t.qualifying_total_minor <= order_net_qualifying_minor(o)
    ORDER BY t.rank DESC LIMIT 1
) t ON true
WHERE o.customer_id = $1 AND o.paid AND o.membership_evaluated_at IS NOT NULL
  AND o.membership_evaluated_at + make_interval(days => t.duration_days) > now()
ORDER BY t.rank DESC, expires_at DESC, o.id
LIMIT 1
"""


# $1 the changed order, $2 its customer. The customer is locked before its active
# enrolment; whether the order still earns that enrolment's tier is read only when
# the enrolment came from it.
_ACTIVE_SQL = """
WITH customer AS (
    SELECT id FROM customers WHERE id = $2 FOR UPDATE
), active AS (
    SELECT e.id, e.tier_id, e.source_order_id, t.currency, t.qualifying_total_minor
    FROM customer JOIN enrolments e ON e.customer_id = customer.id AND e.status = 'active'
    JOIN tiers t ON t.id = e.tier_id
    FOR UPDATE OF e
)
SELECT active.id, active.tier_id, active.source_order_id = $1 AS from_order,
       (SELECT o.paid AND o.currency = active.currency
               AND order_net_qualifying_minor(o) >= active.qualifying_total_minor
        FROM orders o WHERE o.id = $1 AND o.id = active.source_order_id) AS still
FROM customer LEFT JOIN active ON true
"""


async def reevaluate_order(
    conn: asyncpg.Connection,
    *,
    order_id: int,
    customer_id: int,
    provider: str,
    max_attempts: int,
    source: str,
    correlation_id: str | None,
) -> Decision:
    """Revoke or move the enrolment ``order_id`` earned if it no longer qualifies.

    One read when nothing changes (lock the customer, then its active enrolment, and
    see whether the order still earns it); when it does not, a read of the best
    remaining tier and one write (:mod:`services.syncer.enrolment_changes`).

    Returns:
        ``revoked`` (no tier left), ``moved`` (to another tier), ``kept`` (the order,
        or another one, still earns the same tier) or ``none`` (the order earned no
        active enrolment).
    """
    active = await conn.fetchrow(_ACTIVE_SQL, order_id, customer_id)
    if active is None or not active["from_order"]:
        return Decision("none")
    if active["still"]:
        return Decision("kept", active["id"])
    best = await conn.fetchrow(_BEST_REMAINING_SQL, customer_id)
    if best is not None and best["tier_id"] == active["tier_id"]:
        # Another paid order earns the same tier: it becomes the source; nothing to send.
        await conn.execute(
            "UPDATE enrolments SET source_order_id = $2, expires_at = $3, updated_at = now()"
            " WHERE id = $1",
            active["id"],
            best["order_id"],
            best["expires_at"],
        )
        return Decision("kept", active["id"])
    if best is None:
        change = EnrolmentChange(
            customer_id=customer_id,
            kind="cancel_membership",
            provider=provider,
            end_id=active["id"],
            end_status="revoked",
            is_member=False,
        )
    else:
        change = EnrolmentChange(
            customer_id=customer_id,
            kind="downgrade_membership",
            provider=provider,
            end_id=active["id"],
            end_status="revoked",
            tier_id=best["tier_id"],
            expires_at=best["expires_at"],
            source_order_id=best["order_id"],
            payload=best["provider_context"] or {},
        )
    done = await apply_change(
        conn, change, max_attempts=max_attempts, source=source, correlation_id=correlation_id
    )
    if best is None:
        log.info("membership.revoked", enrolment_id=active["id"], order_row=order_id)
        return Decision("revoked", active["id"], done.action_id)
    log.info("membership.moved", tier=best["name"], enrolment_id=done.enrolment_id)
    return Decision("moved", done.enrolment_id, done.action_id)
