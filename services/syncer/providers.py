"""Carry one membership action to its provider.

- Shopify: the tier is a customer tag; ``tagsAdd`` / ``tagsRemove`` add and remove it
  without touching the customer's other tags (ADMIN_API.md B1). Both are idempotent.
- Commerce7: the tier is a club membership (NOTES.md §4). Adding searches before it
  creates (``ensure_club_membership``), so a retried add never enrols twice;
  cancelling sets ``cancelDate`` with a reason from Commerce7's list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.clients.commerce7 import ClubMembershipCreate, Commerce7Client
from shared.clients.shopify import ShopifyClient
from shared.errors import PermanentError


@dataclass(frozen=True)
class ActionContext:
    """Everything a provider call needs, read from Postgres before the call."""

    kind: str
    provider: str
    tenant: str
    customer_external_id: str
    tier_tag: str
    tier_club_id: str
    signup_date: datetime
    previous_tag: str | None
    previous_club_id: str | None
    previous_provider_ref: str | None
    provider_ref: str | None
    payload: dict[str, Any]


async def apply_shopify(client: ShopifyClient, ctx: ActionContext) -> str | None:
    if ctx.kind in ("add_membership", "upgrade_membership"):
        await client.add_customer_tags(ctx.customer_external_id, [ctx.tier_tag])
        if ctx.kind == "upgrade_membership" and ctx.previous_tag:
            await client.remove_customer_tags(ctx.customer_external_id, [ctx.previous_tag])
        return None
    if ctx.kind == "cancel_membership":
        await client.remove_customer_tags(ctx.customer_external_id, [ctx.tier_tag])
        return None
    raise PermanentError(f"unknown action kind {ctx.kind}")


async def _cancel_club(
    client: Commerce7Client, ctx: ActionContext, club_id: str, ref: str | None, reason: str
) -> None:
    if ref is None:
        memberships = await client.list_club_memberships(
            ctx.tenant, customer_id=ctx.customer_external_id, club_id=club_id
        )
        active = [m for m in memberships if m.cancel_date is None and m.club_id == club_id]
        if not active:
            return  # nothing to cancel: already cancelled, or never created
        ref = active[0].id
    await client.cancel_club_membership(
        ctx.tenant, ref, cancel_date=datetime.now(UTC), reason=reason
    )


async def apply_commerce7(
    client: Commerce7Client, ctx: ActionContext, cancellation_reason: str
) -> str | None:
    """Returns the club membership id of the (new) enrolment, if one was created."""
    if ctx.kind in ("add_membership", "upgrade_membership"):
        membership = await client.ensure_club_membership(
            ctx.tenant,
            ClubMembershipCreate(
                customer_id=ctx.customer_external_id,
                club_id=ctx.tier_club_id,
                signup_date=ctx.signup_date,
                order_delivery_method=(
                    "Ship" if ctx.payload.get("orderDeliveryMethod") == "Ship" else "Pickup"
                ),
                bill_to_customer_address_id=ctx.payload.get("billToCustomerAddressId"),
                ship_to_customer_address_id=ctx.payload.get("shipToCustomerAddressId"),
                customer_credit_card_id=ctx.payload.get("customerCreditCardId"),
            ),
        )
        if ctx.kind == "upgrade_membership" and ctx.previous_club_id:
            await _cancel_club(
                client, ctx, ctx.previous_club_id, ctx.previous_provider_ref, cancellation_reason
            )
        return membership.id
    if ctx.kind == "cancel_membership":
        await _cancel_club(client, ctx, ctx.tier_club_id, ctx.provider_ref, cancellation_reason)
        return None
    raise PermanentError(f"unknown action kind {ctx.kind}")
