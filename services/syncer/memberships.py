"""W2: decide what a paid order does to the customer's tier, and queue provider actions.

All of it runs inside the order handler's transaction, with the customer's row
locked, so two orders of one customer handled by two replicas at once are decided
one after the other. Every change of a customer's enrolments bumps the customer's
``membership_version`` in the same transaction and queues a provider action at that
version: a row in ``provider_actions`` plus an outbox event, which reach the provider
only if this transaction commits. The action then makes the provider equal to the
customer's enrolment at the time it runs (``consumers/membership_actions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

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


async def net_qualifying_minor(conn: asyncpg.Connection, order_id: int) -> int:
    """The order's qualifying amount now, in minor units, net of its refund orders."""
    net: int = await conn.fetchval(
        "SELECT order_net_qualifying_minor(o) FROM orders o WHERE o.id = $1", order_id
    )
    return net


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
    event; None if it existed."""
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


async def apply_order(
    conn: asyncpg.Connection,
    *,
    order: asyncpg.Record,
    customer_id: int,
    provider: str,
    provider_context: dict[str, Any],
    max_attempts: int,
    source: str,
    correlation_id: str | None,
) -> Decision:
    """Enrol, upgrade or extend for one paid order, once (the order row remembers).

    Returns:
        the decision; ``none`` when no tier qualifies or the order was seen before.
    """
    if not order["paid"] or order["membership_evaluated_at"] is not None:
        return Decision("none")
    await conn.execute("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", customer_id)
    await conn.execute(
        "UPDATE orders SET membership_evaluated_at = now() WHERE id = $1", order["id"]
    )
    tier = await conn.fetchrow(
        """
        SELECT * FROM tiers WHERE currency = $1 AND qualifying_total_minor <= $2
        ORDER BY rank DESC LIMIT 1
        """,
        order["currency"],
        await net_qualifying_minor(conn, order["id"]),
    )
    if tier is None:
        return Decision("none")
    active = await conn.fetchrow(
        """
        SELECT e.*, t.rank FROM enrolments e JOIN tiers t ON t.id = e.tier_id
        WHERE e.customer_id = $1 AND e.status = 'active' FOR UPDATE OF e
        """,
        customer_id,
    )
    if active is not None and active["tier_id"] == tier["id"]:
        await conn.execute(
            """
            UPDATE enrolments
            SET expires_at = GREATEST(expires_at, now() + make_interval(days => $2)),
                updated_at = now()
            WHERE id = $1
            """,
            active["id"],
            tier["duration_days"],
        )
        return Decision("extended", active["id"])
    if active is not None and active["rank"] > tier["rank"]:
        return Decision("kept", active["id"])
    kind = "add_membership"
    previous_id = None
    if active is not None:
        kind, previous_id = "upgrade_membership", active["id"]
        await conn.execute(
            "UPDATE enrolments SET status = 'upgraded', ended_at = now(), updated_at = now()"
            " WHERE id = $1",
            previous_id,
        )
    enrolment_id: int = await conn.fetchval(
        """
        INSERT INTO enrolments (customer_id, tier_id, expires_at, source_order_id)
        VALUES ($1, $2, now() + make_interval(days => $3), $4) RETURNING id
        """,
        customer_id,
        tier["id"],
        tier["duration_days"],
        order["id"],
    )
    await conn.execute(
        "UPDATE customers SET is_member = true, updated_at = now() WHERE id = $1", customer_id
    )
    version = await bump_version(conn, customer_id)
    action_id = await queue_action(
        conn,
        kind=kind,
        provider=provider,
        customer_id=customer_id,
        enrolment_id=enrolment_id,
        tier_id=tier["id"],
        previous_enrolment_id=previous_id,
        payload=provider_context,
        max_attempts=max_attempts,
        membership_version=version,
        source=source,
        correlation_id=correlation_id,
    )
    outcome = "upgraded" if previous_id else "enrolled"
    log.info("membership." + outcome, tier=tier["name"], enrolment_id=enrolment_id)
    return Decision(outcome, enrolment_id, action_id)
