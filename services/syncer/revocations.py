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

from typing import Any

import asyncpg
import structlog

from services.syncer.memberships import Decision, bump_version, queue_action

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

    Returns:
        ``revoked`` (no tier left), ``moved`` (to another tier), ``kept`` (the order,
        or another one, still earns the same tier) or ``none`` (the order earned no
        active enrolment).
    """
    await conn.execute("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", customer_id)
    active = await conn.fetchrow(
        """
        SELECT e.id, e.tier_id, e.source_order_id, t.currency, t.qualifying_total_minor
        FROM enrolments e JOIN tiers t ON t.id = e.tier_id
        WHERE e.customer_id = $1 AND e.status = 'active' FOR UPDATE OF e
        """,
        customer_id,
    )
    if active is None or active["source_order_id"] != order_id:
        return Decision("none")
    still = await conn.fetchval(
        "SELECT o.paid AND o.currency = $2 AND order_net_qualifying_minor(o) >= $3"
        " FROM orders o WHERE o.id = $1",
        order_id,
        active["currency"],
        active["qualifying_total_minor"],
    )
    if still:
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
    await conn.execute(
        "UPDATE enrolments SET status = 'revoked', ended_at = now(), updated_at = now()"
        " WHERE id = $1",
        active["id"],
    )
    version = await bump_version(conn, customer_id)
    common: dict[str, Any] = {
        "provider": provider,
        "customer_id": customer_id,
        "max_attempts": max_attempts,
        "membership_version": version,
        "source": source,
        "correlation_id": correlation_id,
    }
    if best is None:
        await conn.execute(
            "UPDATE customers SET is_member = false, updated_at = now() WHERE id = $1",
            customer_id,
        )
        action_id = await queue_action(
            conn,
            kind="cancel_membership",
            enrolment_id=active["id"],
            tier_id=active["tier_id"],
            previous_enrolment_id=None,
            payload={},
            **common,
        )
        log.info("membership.revoked", enrolment_id=active["id"], order_row=order_id)
        return Decision("revoked", active["id"], action_id)
    enrolment_id: int = await conn.fetchval(
        """
        INSERT INTO enrolments (customer_id, tier_id, expires_at, source_order_id)
        VALUES ($1, $2, $3, $4) RETURNING id
        """,
        customer_id,
        best["tier_id"],
        best["expires_at"],
        best["order_id"],
    )
    action_id = await queue_action(
        conn,
        kind="downgrade_membership",
        enrolment_id=enrolment_id,
        tier_id=best["tier_id"],
        previous_enrolment_id=active["id"],
        payload=best["provider_context"] or {},
        **common,
    )
    log.info("membership.moved", tier=best["name"], enrolment_id=enrolment_id)
    return Decision("moved", enrolment_id, action_id)
