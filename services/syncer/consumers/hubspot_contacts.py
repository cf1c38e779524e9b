"""``syncer.hubspot.contacts``: carry credit changes to HubSpot, coalesced.

Each message names a contact whose balances changed. Handlers hand the contact id
to the syncer's :class:`~shared.coalesce.Coalescer`, which sends up to 100 contacts
per HubSpot batch call once the batch has been quiet for ``CRMSYNC_HUBSPOT_PUSH_WINDOW_S``
(200 ms by default; 10 times that at most), one call in flight at a time: under load,
one call per 100 notifications, never one each.
The message is acked only after HubSpot answered for its contact. A record HubSpot
refuses (207) keeps its error on the contact row and is retried by the next batch
sync; a whole call that fails (5xx, 429 after retries) retries the messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from services.syncer.deps import SyncerDeps
from services.syncer.hubspot.contacts import push_contacts
from shared.consumer import Delivery
from shared.events import CloudEvent
from shared.messages.credits import ContactPush

log = structlog.get_logger(__name__)


async def flush_contact_pushes(
    deps: SyncerDeps, contact_ids: Sequence[int]
) -> Mapping[int, BaseException | None]:
    """One HubSpot round for these contacts; per-record refusals are recorded, not raised."""
    outcome = await push_contacts(deps.pool, deps.hubspot, contact_ids)
    log.info(
        "hubspot.contacts_pushed",
        contacts=len(contact_ids),
        created=len(outcome.created),
        updated=len(outcome.updated),
        failed=len(outcome.failed),
    )
    return {}


async def handle_contact_push(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Wait until the batch holding this contact has reached HubSpot."""
    push = event.data_as(ContactPush)
    await deps.contact_pushes.submit(push.contact_id)
