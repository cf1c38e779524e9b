"""Make a provider's membership state for one customer equal to Postgres's (level-triggered).

Each function reads the provider's current state once, compares it with the
:class:`~services.syncer.desired.DesiredMembership` and writes only the difference, so
running it twice, late, out of order or after a crash ends in the same state.

- **Shopify**: the tier is a customer tag (ADMIN_API.md B1). Read ``GET
  customers/{id}.json``; then ``tagsAdd`` the tier's tag if it is missing and
  ``tagsRemove`` every other crmsync tier tag present (a tag is crmsync's when it is
  some tier's ``shopify_tag``; Shopify tags compare without case). The customer's other
  tags are never touched: both mutations name only the tags they change.
- **Commerce7**: the tier is a club membership (NOTES.md §4); active while
  ``cancelDate`` is null. List the customer's memberships; with no active one in the
  tier's club, create one, then list that club again: two concurrent creates (which
  Commerce7 does not prevent) both show, and every caller keeps the same one, the
  oldest (``createdAt``, then lowest ``id``), and cancels the others. Every other active
  membership in a crmsync club is cancelled, with the configured reason. Memberships
  in clubs crmsync does not own are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from services.syncer.desired import DesiredMembership
from shared.clients.commerce7 import ClubMembership, ClubMembershipCreate, Commerce7Client
from shared.clients.shopify import ShopifyClient
from shared.errors import ProviderRejectedError

log = structlog.get_logger(__name__)

_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass
class Convergence:
    """What one reconcile did: provider ``calls`` (reads and writes), the ``changes``
    it wrote (``"tagsAdd crmsync-tier-gold"``, ...) and, for Commerce7, the id of the
    membership kept (``provider_ref``)."""

    calls: int = 0
    changes: list[str] = field(default_factory=list)
    provider_ref: str | None = None


async def converge_shopify(client: ShopifyClient, desired: DesiredMembership) -> Convergence:
    """Tags right at Shopify: 1 read, then at most one ``tagsAdd`` and one ``tagsRemove``.

    Raises:
        ProviderRejectedError: e.g. 404, the customer no longer exists (permanent).
        ProviderUnavailableError: 429, 5xx, timeout (retried by the caller).
    """
    result = Convergence(calls=1)
    customer = await client.get_customer(desired.external_id)
    present = {tag.lower() for tag in customer.tags}
    ours = {tag.lower() for tag in desired.tier_tags}
    wanted = desired.tag.lower() if desired.tag else None
    # Add before removing: an upgraded customer is never without a tier tag.
    if desired.tag and wanted not in present:
        await client.add_customer_tags(desired.external_id, [desired.tag])
        result.calls += 1
        result.changes.append(f"tagsAdd {desired.tag}")
    extras = [tag for tag in customer.tags if tag.lower() in ours and tag.lower() != wanted]
    if extras:
        await client.remove_customer_tags(desired.external_id, extras)
        result.calls += 1
        result.changes.append(f"tagsRemove {', '.join(extras)}")
    return result


def keep_order(membership: ClubMembership) -> tuple[datetime, str]:
    """The order in which duplicates are kept: oldest ``createdAt`` first (unknown last),
    then lowest ``id``. A total order on the memberships' own fields, so every caller
    that sees the same duplicates keeps the same one."""
    return (membership.created_at or _LATEST, membership.id)


def _active(
    memberships: Iterable[ClubMembership], customer_id: str, clubs: frozenset[str]
) -> list[ClubMembership]:
    # Filter again: the customerId / clubId query filters are only third-party documented.
    return [
        m
        for m in memberships
        if m.is_active and m.customer_id == customer_id and m.club_id in clubs
    ]


async def converge_commerce7(
    client: Commerce7Client,
    desired: DesiredMembership,
    cancellation_reason: str,
) -> Convergence:
    """Exactly one active membership, in the tier's club (none without a tier).

    Calls: 1 list; + create and 1 list of the club when the club membership is missing;
    + 1 cancel per extra membership.

    Raises:
        ProviderRejectedError: e.g. 422 no card on file (permanent).
        ProviderUnavailableError: 429, 5xx, timeout (retried by the caller).
    """
    result = Convergence(calls=1)
    tenant, customer = desired.tenant, desired.external_id
    listed = await client.list_club_memberships(tenant, customer_id=customer)
    active = _active(listed, customer, desired.tier_clubs | _club(desired))
    keep: ClubMembership | None = None
    if desired.club_id is not None:
        in_club = [m for m in active if m.club_id == desired.club_id]
        if not in_club:
            created = await client.create_club_membership(tenant, _create_body(desired))
            result.changes.append(f"create {desired.club_id}")
            # Check after create: a concurrent attempt may have created one as well.
            again = await client.list_club_memberships(
                tenant, customer_id=customer, club_id=desired.club_id
            )
            result.calls += 2
            in_club = _active(again, customer, _club(desired))
            if created.id not in {m.id for m in in_club}:
                in_club.append(created)  # a listing that lags behind its own create
            active = [m for m in active if m.club_id != desired.club_id] + in_club
        keep = min(in_club, key=keep_order)
        result.provider_ref = keep.id
    for extra in sorted((m for m in active if keep is None or m.id != keep.id), key=keep_order):
        await _cancel(client, tenant, extra, cancellation_reason)
        result.calls += 1
        result.changes.append(f"cancel {extra.id} ({extra.club_id})")
    return result


def _club(desired: DesiredMembership) -> frozenset[str]:
    return frozenset({desired.club_id}) if desired.club_id else frozenset()


def _create_body(desired: DesiredMembership) -> ClubMembershipCreate:
    context = desired.create_context
    assert desired.club_id is not None
    return ClubMembershipCreate(
        customer_id=desired.external_id,
        club_id=desired.club_id,
        signup_date=desired.signup_date or datetime.now(UTC),
        order_delivery_method="Ship" if context.get("orderDeliveryMethod") == "Ship" else "Pickup",
        bill_to_customer_address_id=context.get("billToCustomerAddressId"),
        ship_to_customer_address_id=context.get("shipToCustomerAddressId"),
        customer_credit_card_id=context.get("customerCreditCardId"),
    )


async def _cancel(
    client: Commerce7Client, tenant: str, membership: ClubMembership, reason: str
) -> None:
    try:
        await client.cancel_club_membership(
            tenant, membership.id, cancel_date=datetime.now(UTC), reason=reason
        )
    except ProviderRejectedError as exc:
        if exc.status != 404:
            raise
        # Gone already (deleted at Commerce7): nothing left to cancel.
        log.info("commerce7.membership_already_gone", membership_id=membership.id)
