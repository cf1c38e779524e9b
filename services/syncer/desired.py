"""What Postgres says a customer should have at a provider, read when an action runs.

One statement reads the customer's ``membership_version`` together with its active
enrolment (one snapshot), so "the provider now equals version V" is exact: every
change of a customer's enrolments bumps the version in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

_DESIRED_SQL = """
SELECT c.id, c.provider, c.tenant, c.external_id, c.membership_version,
       e.id AS enrolment_id, e.started_at, e.provider_ref, t.name AS tier_name,
       t.shopify_tag, t.commerce7_club_id,
       COALESCE(NULLIF(o.provider_context, '{}'::jsonb), (
           SELECT a.payload FROM provider_actions a
           WHERE a.enrolment_id = e.id AND a.payload <> '{}'::jsonb
           ORDER BY a.id DESC LIMIT 1), '{}'::jsonb) AS create_context
FROM customers c
LEFT JOIN enrolments e ON e.customer_id = c.id AND e.status = 'active'
LEFT JOIN tiers t ON t.id = e.tier_id
LEFT JOIN orders o ON o.id = e.source_order_id
WHERE c.id = $1
"""


@dataclass(frozen=True)
class DesiredMembership:
    """The target state of one customer at its provider.

    Attributes:
        version: the customer's ``membership_version`` this state belongs to.
        enrolment_id: the active enrolment, or None (the customer should have no tier).
        tag: the Shopify tag of the active tier (None: no crmsync tag at all).
        club_id: the Commerce7 club of the active tier (None: no crmsync club).
        signup_date: the enrolment's start, sent when a club membership is created.
        create_context: the source order's address and card ids (Commerce7).
        tier_tags: every tier's ``shopify_tag``: the tags crmsync owns; others are
            never touched.
        tier_clubs: every tier's ``commerce7_club_id``: the clubs crmsync owns.
    """

    customer_id: int
    provider: str
    tenant: str
    external_id: str
    version: int
    enrolment_id: int | None
    tier_name: str | None
    tag: str | None
    club_id: str | None
    signup_date: datetime | None
    provider_ref: str | None
    create_context: dict[str, Any] = field(default_factory=dict)
    tier_tags: frozenset[str] = frozenset()
    tier_clubs: frozenset[str] = frozenset()


async def read_desired(conn: asyncpg.Connection, customer_id: int) -> DesiredMembership:
    """The customer's target state now.

    Raises:
        LookupError: no such customer.
    """
    row = await conn.fetchrow(_DESIRED_SQL, customer_id)
    if row is None:
        raise LookupError(f"no customer {customer_id}")
    tiers = await conn.fetch("SELECT DISTINCT shopify_tag, commerce7_club_id FROM tiers")
    return DesiredMembership(
        customer_id=row["id"],
        provider=row["provider"],
        tenant=row["tenant"],
        external_id=row["external_id"],
        version=row["membership_version"],
        enrolment_id=row["enrolment_id"],
        tier_name=row["tier_name"],
        tag=row["shopify_tag"],
        club_id=row["commerce7_club_id"],
        signup_date=row["started_at"],
        provider_ref=row["provider_ref"],
        create_context=row["create_context"] or {},
        tier_tags=frozenset(t["shopify_tag"] for t in tiers),
        tier_clubs=frozenset(t["commerce7_club_id"] for t in tiers),
    )
