"""Metric labels for webhook topics, from allow-lists only.

A topic comes from the request (Shopify's ``X-Shopify-Topic`` header is not covered
by the HMAC; Commerce7's ``object``/``action`` are body fields), so using it as a
Prometheus label as is would let any sender create label values, and time series,
without bound. Known topics keep their name; every other one is counted as ``other``.
"""

from __future__ import annotations

from shared.messages.orders import COMMERCE7_ORDER_ACTIONS, SHOPIFY_ORDER_TOPICS

# The label of every topic not listed below.
OTHER = "other"

# Shopify topics a shop or app commonly subscribes to (REST names, shopify.dev
# "webhooks" reference), besides the order topics crmsync handles.
SHOPIFY_TOPICS = SHOPIFY_ORDER_TOPICS | frozenset(
    {
        "orders/create",
        "orders/paid",
        "orders/updated",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/partially_fulfilled",
        "orders/edited",
        "orders/delete",
        "refunds/create",
        "customers/create",
        "customers/update",
        "customers/delete",
        "customers/enable",
        "customers/disable",
        "products/create",
        "products/update",
        "products/delete",
        "checkouts/create",
        "checkouts/update",
        "carts/create",
        "carts/update",
        "fulfillments/create",
        "fulfillments/update",
        "inventory_levels/update",
        "app/uninstalled",
        "shop/update",
        # Mandatory compliance topics.
        "customers/data_request",
        "customers/redact",
        "shop/redact",
    }
)

# Commerce7 objects and actions seen in its webhooks (reference/commerce7/NOTES.md §3).
COMMERCE7_OBJECTS = frozenset(
    {
        "Allocation",
        "Cart",
        "Club",
        "Club Package",
        "Club Membership",
        "Collection",
        "Customer",
        "Customer Address",
        "Customer Credit Card",
        "Coupon",
        "Group",
        "Product",
        "Promotion",
        "Order",
        "Reservation",
        "Tag",
        "Transaction Email",
    }
)
COMMERCE7_ACTIONS = COMMERCE7_ORDER_ACTIONS | frozenset(
    {"Create", "Update", "Delete", "Bulk Update"}
)


def shopify_topic_label(topic: str) -> str:
    """``topic`` when Shopify documents it, else ``other``."""
    return topic if topic in SHOPIFY_TOPICS else OTHER


def commerce7_topic_label(obj: str, action: str) -> str:
    """``Object/Action`` when both are known Commerce7 names, else ``other``."""
    if obj in COMMERCE7_OBJECTS and action in COMMERCE7_ACTIONS:
        return f"{obj}/{action}"
    return OTHER
