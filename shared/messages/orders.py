"""Order webhooks as Shopify and Commerce7 send them (the fields crmsync reads).

Shapes follow the providers' own payloads, kept in the team kit:
``reference/shopify/webhooks/order_450789469.body.json`` (an ``orders/paid`` body is
the bare REST Order resource, WEBHOOKS.md §1) and
``reference/commerce7/webhook_order_create.json`` (Commerce7's envelope
``{object, action, payload, user, tenantId, webHookId}``, NOTES.md §3). Every other
field is ignored, so new provider fields never break validation.

A ``refunds/create`` body is Shopify's REST Refund resource, bare (WEBHOOKS.md §1: the
body is "the full REST resource payload for the topic"): ``{id, order_id, created_at,
processed_at, note, refund_line_items, transactions, order_adjustments, ...}``, the
shape of ``order["refunds"][i]`` in ``admin-rest-2026-07/order_get_450789469.response.json``
(topic ``REFUNDS_CREATE`` in https://shopify.dev/docs/api/admin-graphql/2026-01/enums/WebhookSubscriptionTopic).
An ``orders/cancelled`` body is the Order resource with ``cancelled_at`` and
``cancel_reason`` set (https://shopify.dev/docs/api/webhooks, topic ``ORDERS_CANCELLED``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.types import (
    BigInt,
    EventTime,
    Identifier,
    Money,
    SignedBigInt,
    Text,
)

# Event types (= routing keys). Shopify topics map "orders/paid" -> "shopify.orders.paid".
SHOPIFY_ORDER_EVENT_PREFIX = "shopify.orders."
SHOPIFY_REFUND_CREATED = "shopify.refunds.create"
COMMERCE7_ORDER_ACTIONS = frozenset({"Create", "Update"})
# ISO 4217 codes, as Shopify writes them.
CURRENCY_PATTERN = r"^[A-Z]{3}$"


def shopify_event_type(topic: str) -> str:
    return "shopify." + topic.replace("/", ".")


def commerce7_event_type(obj: str, action: str) -> str:
    return f"commerce7.{obj.lower()}.{action.lower().replace(' ', '_')}"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ShopifyCustomerRef(_Lenient):
    id: BigInt
    email: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    phone: Text | None = None


class ShopifyOrder(_Lenient):
    """A Shopify order webhook body. Money fields are decimal strings in ``currency``."""

    id: BigInt
    name: Text | None = None
    order_number: BigInt | None = None
    email: Text | None = None
    currency: str = Field(pattern=CURRENCY_PATTERN)
    total_price: Money
    subtotal_price: Money | None = None
    # After order edits, returns and refunds (Shopify's "current_*" fields).
    current_subtotal_price: Money | None = None
    financial_status: Text | None = None
    cancelled_at: EventTime | None = None
    processed_at: EventTime | None = None
    updated_at: EventTime | None = None
    customer: ShopifyCustomerRef | None = None
    test: bool = Field(default=False, strict=True)

    @property
    def order_ref(self) -> str:
        """The order's id, the event's ``subject``."""
        return str(self.id)


class ShopifyRefund(_Lenient):
    """A ``refunds/create`` body: the Refund resource (see the module docstring).

    Only the order it belongs to is read: the syncer then reads the order itself
    (``GET orders/{order_id}.json``), whose ``current_subtotal_price`` is net of every
    refund, so refunds arriving in any order, or twice, come to the same amount.
    """

    id: BigInt
    order_id: BigInt
    created_at: EventTime | None = None

    @property
    def order_ref(self) -> str:
        """The refunded order's id, the event's ``subject``."""
        return str(self.order_id)


# The topics crmsync handles, and the model each body is validated with.
SHOPIFY_TOPIC_MODELS: dict[str, type[ShopifyOrder] | type[ShopifyRefund]] = {
    "orders/create": ShopifyOrder,
    "orders/paid": ShopifyOrder,
    "orders/updated": ShopifyOrder,
    "orders/cancelled": ShopifyOrder,
    "refunds/create": ShopifyRefund,
}
SHOPIFY_ORDER_TOPICS = frozenset(SHOPIFY_TOPIC_MODELS)


class Commerce7Email(_Lenient):
    email: Text


class Commerce7Phone(_Lenient):
    phone: Text


class Commerce7CustomerRef(_Lenient):
    id: Identifier
    first_name: Text | None = Field(default=None, alias="firstName")
    last_name: Text | None = Field(default=None, alias="lastName")
    emails: list[Commerce7Email] = []
    phones: list[Commerce7Phone] = []


class Commerce7AddressRef(_Lenient):
    customer_address_id: Identifier | None = Field(default=None, alias="customerAddressId")


class Commerce7CreditCard(_Lenient):
    customer_credit_card_id: Identifier | None = Field(default=None, alias="customerCreditCardId")


class Commerce7Tender(_Lenient):
    """A payment; a card tender names the card on file in ``creditCard``."""

    customer_credit_card_id: Identifier | None = Field(default=None, alias="customerCreditCardId")
    credit_card: Commerce7CreditCard | None = Field(default=None, alias="creditCard")

    @property
    def card_on_file(self) -> str | None:
        nested = self.credit_card.customer_credit_card_id if self.credit_card else None
        return self.customer_credit_card_id or nested


class Commerce7Order(_Lenient):
    """A Commerce7 Order. Money fields are integer cents (NOTES.md §3)."""

    id: Identifier = Field(min_length=1)
    order_number: BigInt | None = Field(default=None, alias="orderNumber")
    customer_id: Identifier = Field(alias="customerId", min_length=1)
    customer: Commerce7CustomerRef | None = None
    payment_status: Text = Field(alias="paymentStatus")
    purchase_type: Text | None = Field(default=None, alias="purchaseType")
    # The order a refund order refunds ([unconfirmed]: the field is on every order in
    # reference/commerce7/order.json, its meaning is not documented).
    previous_order_id: Identifier | None = Field(default=None, alias="previousOrderId")
    sub_total: SignedBigInt = Field(alias="subTotal")
    total: SignedBigInt
    order_paid_date: EventTime | None = Field(default=None, alias="orderPaidDate")
    updated_at: EventTime | None = Field(default=None, alias="updatedAt")
    order_delivery_method: Text | None = Field(default=None, alias="orderDeliveryMethod")
    bill_to: Commerce7AddressRef | None = Field(default=None, alias="billTo")
    ship_to: Commerce7AddressRef | None = Field(default=None, alias="shipTo")
    tenders: list[Commerce7Tender] = []


class Commerce7Envelope(_Lenient):
    """Any Commerce7 webhook: what intake checks before it knows the object."""

    object: Text
    action: Text
    tenant_id: Identifier = Field(alias="tenantId", min_length=1)
    user: Text | None = None
    web_hook_id: Text | None = Field(default=None, alias="webHookId")


class Commerce7OrderWebhook(Commerce7Envelope):
    """An Order Create/Update webhook; the envelope travels whole as the event data."""

    payload: Commerce7Order
