"""A change of a customer's enrolments in one statement: end one, start one, bump the
customer's ``membership_version`` and queue the provider action with its outbox event.

The order handler used to spend five to seven round trips on this (end the old
enrolment, insert the new one, set ``is_member``, bump the version, insert the action,
insert the outbox row; issue 11 item 5). Here they are data-modifying CTEs of one
statement, each reading the one before it, so they run in this order, which is also
the lock order of the order path (customer, then enrolment; the caller holds both
locks already, from its read):

1. ``ended``: the enrolment that ends (``upgraded`` or ``revoked``), if any;
2. ``enrolled``: the new enrolment, if any; it reads ``ended`` first, so the old one
   is no longer active when the new one is inserted (one active enrolment per
   customer, ``enrolments_one_active``);
3. ``bumped``: the customer's next version (and ``is_member``);
4. ``action``: the ``pending`` provider action at that version, on the new enrolment
   (else on the ended one); nothing if one of that kind exists for it;
5. ``event``: its outbox row, only when the action is new.

The outbox event is the one :func:`services.syncer.memberships.queue_action` writes:
the body is ``MembershipActionRequested`` rendered by pydantic around the action id,
which only Postgres knows here, and the headers are the event's own, with the three
that depend on the id (``id``, ``subject``, ``correlationid`` by default) set in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.messages.memberships import MembershipActionRequested, membership_action_type
from shared.outbox import CORRELATION_HEADER, ID_HEADER, SUBJECT_HEADER, headers_but_ids

# $1 customer id; $2 the ending enrolment's new status, $3 its id (NULL: none); the new
# enrolment: $4 tier id (NULL: none), $5 expires_at, $6 source order id; $7 is_member
# after (NULL: unchanged); the action: $8 kind, $9 provider, $10 payload, $11
# max_attempts; its event: $12 routing key, $13 headers without the three below,
# $14..$16 the names of the id, subject and correlation id headers, $17 the
# correlation id (NULL: the event's id), $18 and $19 the body around the action id.
CHANGE_SQL = """
WITH ended AS (
    UPDATE enrolments SET status = $2::text, ended_at = now(), updated_at = now()
    WHERE id = $3::bigint
    RETURNING id, tier_id
), enrolled AS (
    INSERT INTO enrolments (customer_id, tier_id, expires_at, source_order_id)
    SELECT $1::bigint, $4::int, $5::timestamptz, $6::bigint
    FROM (SELECT count(*) FROM ended) AS after_ended
    WHERE $4::int IS NOT NULL
    RETURNING id, tier_id
), bumped AS (
    UPDATE customers SET is_member = COALESCE($7::boolean, is_member),
           membership_version = membership_version + 1, updated_at = now()
    WHERE id = $1::bigint
    RETURNING membership_version
), target AS (
    SELECT id, tier_id, (SELECT id FROM ended) AS previous_id FROM enrolled
    UNION ALL
    SELECT id, tier_id, NULL FROM ended WHERE $4::int IS NULL
), action AS (
    INSERT INTO provider_actions (kind, provider, customer_id, enrolment_id, tier_id,
                                  previous_enrolment_id, payload, max_attempts,
                                  membership_version)
    SELECT $8::text, $9::text, $1::bigint, target.id, target.tier_id, target.previous_id,
           $10::jsonb, $11::int, bumped.membership_version
    FROM target, bumped
    ON CONFLICT (enrolment_id, kind) DO NOTHING
    RETURNING id, 'provider-action-' || id AS event_id
), event AS (
    INSERT INTO outbox (event_id, routing_key, headers, body, content_type)
    SELECT action.event_id, $12::text,
           $13::jsonb || jsonb_build_object($14::text, action.event_id, $15::text,
                                            action.id::text, $16::text,
                                            COALESCE($17::text, action.event_id)),
           convert_to($18::text || action.id || $19::text, 'UTF8'), 'application/json'
    FROM action
    ON CONFLICT (event_id) DO NOTHING
)
SELECT (SELECT id FROM enrolled) AS enrolment_id, (SELECT id FROM action) AS action_id
"""

# Stands for the action id while pydantic renders the body; split on it afterwards.
_ACTION_ID_MARK = 987_654_321_987_654_321


@dataclass(frozen=True)
class EnrolmentChange:
    """What changes, decided by the caller.

    Attributes:
        customer_id: the customer, locked by the caller.
        kind: the provider action's kind (``add_membership``, ...).
        provider: ``shopify`` or ``commerce7``.
        end_id: the active enrolment that ends (locked by the caller), or None.
        end_status: its status after: ``upgraded`` or ``revoked``.
        tier_id: the new enrolment's tier, or None for no new enrolment (the action is
            then about the ended one).
        expires_at: the new enrolment's end.
        source_order_id: the order the new enrolment comes from.
        is_member: ``customers.is_member`` after; None leaves it.
        payload: what the provider call needs (Commerce7 address and card ids).
    """

    customer_id: int
    kind: str
    provider: str
    end_id: int | None = None
    end_status: str | None = None
    tier_id: int | None = None
    expires_at: datetime | None = None
    source_order_id: int | None = None
    is_member: bool | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeResult:
    """The new enrolment's id (None without one); the action's (None if it existed)."""

    enrolment_id: int | None
    action_id: int | None


def _event_args(change: EnrolmentChange, source: str, correlation_id: str | None) -> list[Any]:
    """``CHANGE_SQL``'s $12..$19: the action event, less what depends on its id."""
    names = [ID_HEADER, SUBJECT_HEADER, CORRELATION_HEADER]
    template = headers_but_ids(
        type=membership_action_type(change.provider), source=source, correlationid=None
    )
    body = MembershipActionRequested.model_validate(
        {"actionId": _ACTION_ID_MARK, "provider": change.provider, "kind": change.kind}
    ).model_dump_json(by_alias=True)
    before, after = body.split(str(_ACTION_ID_MARK))
    routing_key = membership_action_type(change.provider)
    return [routing_key, template, *names, correlation_id, before, after]


async def apply_change(
    conn: asyncpg.Connection,
    change: EnrolmentChange,
    *,
    max_attempts: int,
    source: str,
    correlation_id: str | None,
) -> ChangeResult:
    """Write ``change`` in one statement, inside the caller's transaction (which holds
    the customer's row lock and the ending enrolment's).

    Args:
        max_attempts: the provider action's attempts at most.
        source: the action event's CloudEvents ``source``.
        correlation_id: the event's correlation id (None: its own id).
    """
    row = await conn.fetchrow(
        CHANGE_SQL,
        change.customer_id,
        change.end_status,
        change.end_id,
        change.tier_id,
        change.expires_at,
        change.source_order_id,
        change.is_member,
        change.kind,
        change.provider,
        change.payload,
        max_attempts,
        *_event_args(change, source, correlation_id),
    )
    return ChangeResult(row["enrolment_id"], row["action_id"])
