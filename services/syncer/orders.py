"""Orders from either provider, normalised to one shape.

Which amount qualifies for a tier (also in the README):

- **Shopify**: ``current_subtotal_price``: line items after discounts, net of refunds,
  returns and order edits, before tax and shipping (``subtotal_price`` on payloads too
  old to carry it). Paid means ``financial_status`` is ``paid`` or
  ``partially_refunded`` and the order is not cancelled; test orders never qualify.
- **Commerce7**: ``subTotal`` in cents of the tenant's currency
  (``CRMSYNC_COMMERCE7_CURRENCY``; Commerce7 orders carry none), before tax and
  shipping. Paid means ``paymentStatus == "Paid"`` on a ``Regular`` purchase. A refund
  order (``purchaseType`` ``Refund``) never qualifies; when it names the order it
  refunds (``previousOrderId``; its meaning is not documented, NOTES.md "Not found")
  its ``|subTotal|`` is subtracted from that order's amount.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.messages.orders import Commerce7OrderWebhook, ShopifyOrder
from shared.money import to_minor

SHOPIFY_PAID_STATUSES = frozenset({"paid", "partially_refunded"})


@dataclass(frozen=True)
class CustomerData:
    provider: str
    tenant: str
    external_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None


@dataclass(frozen=True)
class OrderData:
    provider: str
    tenant: str
    external_id: str
    order_number: str | None
    financial_status: str
    currency: str
    total_minor: int
    qualifying_total_minor: int
    paid: bool
    source_updated_at: datetime | None
    customer: CustomerData | None
    # What a provider action needs later (Commerce7 address and card ids).
    provider_context: dict[str, Any] = field(default_factory=dict)
    # A refund order: the external id of the order it refunds, and by how much.
    refund_of: str | None = None
    refunded_minor: int = 0


def from_shopify(order: ShopifyOrder, event_type: str) -> OrderData:
    """Normalise a Shopify order; ``event_type`` ``shopify.orders.paid`` implies paid."""
    status = (order.financial_status or "unknown").lower()
    if event_type == "shopify.orders.paid" and status == "unknown":
        status = "paid"
    qualifying = order.current_subtotal_price
    if qualifying is None:
        qualifying = order.subtotal_price if order.subtotal_price is not None else order.total_price
    paid = status in SHOPIFY_PAID_STATUSES and order.cancelled_at is None and not order.test
    customer = None
    if order.customer is not None:
        c = order.customer
        customer = CustomerData(
            provider="shopify",
            tenant="",
            external_id=str(c.id),
            email=c.email or order.email,
            first_name=c.first_name,
            last_name=c.last_name,
            phone=c.phone,
        )
    return OrderData(
        provider="shopify",
        tenant="",
        external_id=str(order.id),
        order_number=order.name or (str(order.order_number) if order.order_number else None),
        financial_status=status,
        currency=order.currency.upper(),
        total_minor=to_minor(order.total_price, order.currency),
        qualifying_total_minor=max(0, to_minor(qualifying, order.currency)),
        paid=paid,
        source_updated_at=order.updated_at,
        customer=customer,
    )


def from_commerce7(webhook: Commerce7OrderWebhook, currency: str) -> OrderData:
    """Normalise a Commerce7 order; amounts are already cents."""
    order = webhook.payload
    c = order.customer
    customer = CustomerData(
        provider="commerce7",
        tenant=webhook.tenant_id,
        external_id=order.customer_id,
        email=c.emails[0].email if c and c.emails else None,
        first_name=c.first_name if c else None,
        last_name=c.last_name if c else None,
        phone=c.phones[0].phone if c and c.phones else None,
    )
    card = next((t.card_on_file for t in order.tenders if t.card_on_file), None)
    purchase_type = order.purchase_type or "Regular"
    paid = order.payment_status == "Paid" and purchase_type == "Regular"
    is_refund = purchase_type == "Refund" and bool(order.previous_order_id)
    return OrderData(
        provider="commerce7",
        tenant=webhook.tenant_id,
        external_id=order.id,
        order_number=str(order.order_number) if order.order_number is not None else None,
        financial_status=order.payment_status.lower(),
        currency=currency.upper(),
        total_minor=order.total,
        qualifying_total_minor=max(0, order.sub_total),
        paid=paid,
        source_updated_at=order.updated_at,
        customer=customer,
        provider_context={
            "billToCustomerAddressId": order.bill_to.customer_address_id if order.bill_to else None,
            "shipToCustomerAddressId": order.ship_to.customer_address_id if order.ship_to else None,
            "customerCreditCardId": card,
            "orderDeliveryMethod": order.order_delivery_method,
        },
        refund_of=order.previous_order_id if is_refund else None,
        refunded_minor=abs(order.sub_total) if is_refund else 0,
    )
