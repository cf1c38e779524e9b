"""Provider actions as operators see them: list them, retry the failed ones.

A retry is durable: in one transaction the action goes back to ``pending`` (attempts
0, no ``next_retry_at``; ``last_error`` kept until it completes, so it stays clear
why it had stopped) and a new ``membership.action.<provider>`` event is written to
the outbox, which the relay publishes. If the process dies after the commit, the
relay still publishes it; before the commit, nothing changed. The handler makes the
provider equal to the customer's enrolment as it is *then*
(``services/syncer/consumers/membership_actions.py``), so a retry never replays an
outdated edge. ``crmsync actions`` and the admin API (``/v1/actions``) call these.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.events import CloudEvent
from shared.messages.memberships import MembershipActionRequested, membership_action_type
from shared.outbox import enqueue

STATUSES = ("pending", "processing", "completed", "failed")
# Where retry events say they come from (CloudEvents ``source``).
RETRY_SOURCE = "urn:crmsync:ops"


class UnknownStatusError(ValueError):
    """A status filter that is not one of :data:`STATUSES`."""


@dataclass(frozen=True)
class ProviderActionRow:
    """One ``provider_actions`` row.

    Attributes:
        id: the action's id (what :func:`retry_actions` takes).
        kind: ``add_membership``, ``upgrade_membership``, ``downgrade_membership``,
            ``cancel_membership`` (why it was queued).
        provider: ``shopify`` or ``commerce7``.
        customer_id: ``customers.id``; email: the customer's email (may be None).
        status: ``pending``, ``processing``, ``completed``, ``failed``.
        attempts / max_attempts: provider attempts so far, and the budget.
        last_error: the provider's last error.
        next_retry_at: when a ``pending`` action is tried next (None: now).
        claimed_by: the lease owner of the attempt in progress or the last one.
        created_at / updated_at / completed_at: timestamps (UTC).
    """

    id: int
    kind: str
    provider: str
    customer_id: int
    email: str | None
    status: str
    attempts: int
    max_attempts: int
    last_error: str | None
    next_retry_at: datetime | None
    claimed_by: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


_SELECT = """
    SELECT a.id, a.kind, a.provider, a.customer_id, c.email, a.status, a.attempts,
           a.max_attempts, a.last_error, a.next_retry_at, a.claimed_by, a.created_at,
           a.updated_at, a.completed_at
    FROM provider_actions a JOIN customers c ON c.id = a.customer_id
"""


async def list_actions(
    pool: asyncpg.Pool, status: str | None = None, limit: int = 100
) -> list[ProviderActionRow]:
    """Actions, newest first, of one ``status`` (None: any).

    Raises:
        UnknownStatusError: ``status`` is not one of :data:`STATUSES`.
    """
    if status is not None and status not in STATUSES:
        raise UnknownStatusError(f"status must be one of {', '.join(STATUSES)}")
    rows = await pool.fetch(
        _SELECT + " WHERE ($1::text IS NULL OR a.status = $1) ORDER BY a.id DESC LIMIT $2",
        status,
        limit,
    )
    return [ProviderActionRow(**dict(r)) for r in rows]


async def retry_actions(
    pool: asyncpg.Pool, ids: Sequence[int | str] | None = None, all_failed: bool = False
) -> list[ProviderActionRow]:
    """Put ``failed`` actions back to ``pending`` and queue each through the outbox.

    Actions that are not ``failed`` (or do not exist) are left alone, so a retry asked
    twice queues nothing the second time.

    Args:
        ids: action ids (ints, or decimal strings as a CLI or JSON body gives them).
        all_failed: every failed action (``ids`` ignored).

    Returns:
        the actions retried, as they are after the retry (``pending``).

    Raises:
        ValueError: neither ``ids`` nor ``all_failed``, or an id that is not an integer.
    """
    if not all_failed and not ids:
        raise ValueError("give action ids, or all_failed=True")
    wanted = None if all_failed else [int(i) for i in ids or ()]
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            UPDATE provider_actions
            SET status = 'pending', attempts = 0, next_retry_at = NULL, updated_at = now()
            WHERE status = 'failed' AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
            RETURNING id, provider, kind
            """,
            wanted,
        )
        for row in rows:
            data = MembershipActionRequested(
                action_id=row["id"], provider=row["provider"], kind=row["kind"]
            )
            await enqueue(
                conn,
                CloudEvent.create(
                    # A new id each retry: the first event's id is already processed.
                    id=f"provider-action-{row['id']}-retry-{uuid.uuid4().hex[:12]}",
                    type=membership_action_type(row["provider"]),
                    source=RETRY_SOURCE,
                    subject=str(row["id"]),
                    data=data,
                ),
            )
        retried = [r["id"] for r in rows]
        fresh = await conn.fetch(_SELECT + " WHERE a.id = ANY($1) ORDER BY a.id", retried)
    return [ProviderActionRow(**dict(r)) for r in fresh]
