"""The syncer's queues: which events each handler consumes.

Every service declares the queues its events are routed to, so a publish is
routable (publishes are mandatory) even before the first syncer starts. Retry
queues depend on the syncer's settings and are declared by the syncer alone.
"""

from __future__ import annotations

import dataclasses

from shared.messages.credits import BOOKING_EVENT_PREFIX, CONTACT_PUSH, CREDITS_CHANGED
from shared.messages.memberships import membership_action_type
from shared.messages.profiles import (
    LOGIN,
    PACKAGES_CHUNK,
    PACKAGES_REFRESH,
    PACKAGES_REFRESH_STATUS,
)
from shared.messages.repcard import REPCARD_CHUNK
from shared.topology import QueueSpec

ORDERS = QueueSpec("syncer.orders", ("shopify.orders.*", "shopify.refunds.*", "commerce7.order.*"))
MEMBERSHIP_ACTIONS = {
    provider: QueueSpec(
        f"syncer.membership_actions.{provider}", (membership_action_type(provider),)
    )
    for provider in ("shopify", "commerce7")
}

CREDITS = QueueSpec("syncer.credits", (CREDITS_CHANGED,))
BOOKINGS = QueueSpec("syncer.bookings", (BOOKING_EVENT_PREFIX + "*",))
# Contacts whose credits changed, coalesced into HubSpot batch updates.
HUBSPOT_CONTACTS = QueueSpec("syncer.hubspot.contacts", (CONTACT_PUSH,))

# W1: logins and bookings start a profile's package sync; refreshes answer a request.
LOGINS = QueueSpec("syncer.logins", (LOGIN, BOOKING_EVENT_PREFIX + "created"))
PACKAGES_REFRESHES = QueueSpec("syncer.packages.refreshes", (PACKAGES_REFRESH,))
PACKAGES_CHUNKS = QueueSpec("syncer.packages.chunks", (PACKAGES_CHUNK,))
# Status reads of refreshes: never behind a slow CRM call.
PACKAGES_REFRESH_STATUS_QUEUE = QueueSpec(
    "syncer.packages.refresh_status", (PACKAGES_REFRESH_STATUS,)
)
# W5: chunks of a RepCard pull (pages of a list, customers' status logs).
REPCARD_CHUNKS = QueueSpec("syncer.repcard.chunks", (REPCARD_CHUNK,))

ALL = (
    ORDERS,
    *MEMBERSHIP_ACTIONS.values(),
    CREDITS,
    BOOKINGS,
    HUBSPOT_CONTACTS,
    LOGINS,
    PACKAGES_REFRESHES,
    PACKAGES_CHUNKS,
    PACKAGES_REFRESH_STATUS_QUEUE,
    REPCARD_CHUNKS,
)


def with_retries(spec: QueueSpec, delays_s: tuple[float, ...]) -> QueueSpec:
    """``spec`` with its per-delay retry queues."""
    return dataclasses.replace(spec, retry_delays_s=delays_s)
