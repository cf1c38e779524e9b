"""``syncer.hubspot.contacts``: contacts the drift check found different in HubSpot.

Each message names a contact to send again, due or not. The handler hands it to this
replica's :class:`~services.syncer.hubspot.pusher.ContactPusher`, the same one that
carries credit changes in real time (coalesced, up to 100 contacts per HubSpot batch
call, sent under a lease), and the message is acked only once HubSpot answered for its
contact, or another replica holds the contact and sends its current state. A record
HubSpot refuses (207) keeps its error on the contact row and is retried by the next
batch sync; a whole call that fails retries the message.

Credit changes no longer come through this queue (issue 11): the pusher takes them
from ``contacts.hubspot_push_due_at`` directly.
"""

from __future__ import annotations

from services.syncer.deps import SyncerDeps
from shared.consumer import Delivery
from shared.events import CloudEvent
from shared.messages.credits import ContactPush


async def handle_contact_push(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Wait until the batch holding this contact has reached HubSpot."""
    push = event.data_as(ContactPush)
    await deps.contact_pusher.submit(push.contact_id)
