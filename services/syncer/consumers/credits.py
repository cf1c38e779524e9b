"""``syncer.credits``: credit notifications → balances in Postgres at once.

Write-through: the balance is committed here, in milliseconds, and the contact is
marked due for HubSpot in the same transaction; once committed, its id goes to this
replica's pusher (``hubspot/pusher.py``), so HubSpot follows within the push window
and a HubSpot outage never delays or blocks this write.
"""

from __future__ import annotations

import asyncpg
import structlog

from services.syncer.contacts import resolve_contact
from services.syncer.credits_bulk import apply_batch
from services.syncer.credits_fast import can_take_fast_path
from services.syncer.deps import SyncerDeps
from shared.consumer import Delivery
from shared.db import claim_message
from shared.events import CloudEvent
from shared.messages.credits import CreditChange, CreditsNotification
from shared.queues import CREDITS

log = structlog.get_logger(__name__)


async def apply_change(
    conn: asyncpg.Connection, change: CreditChange, note: CreditsNotification, event: CloudEvent
) -> int | None:
    """Apply one contact's balances, each guarded by the version; returns the contact's
    id when any balance changed (it is then due for HubSpot), else None. A version not
    newer than the stored one for a field changes nothing."""
    contact_id = await resolve_contact(conn, change.contact)
    fields = list(change.credits)
    changed = await conn.fetch(
        """
        INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason, occurred_at)
        SELECT $1, t.credit_type, t.balance, $4, $5, $6
        FROM unnest($2::text[], $3::int[]) AS t(credit_type, balance)
        ON CONFLICT (contact_id, credit_type) DO UPDATE SET
            balance = EXCLUDED.balance, version = EXCLUDED.version, reason = EXCLUDED.reason,
            occurred_at = EXCLUDED.occurred_at, updated_at = now()
        WHERE EXCLUDED.version > contact_credits.version
        RETURNING credit_type, balance
        """,
        contact_id,
        fields,
        [change.credits[f] for f in fields],
        change.version,
        note.reason,
        note.occurred_at,
    )
    if not changed:
        return None
    version: int = await conn.fetchval(
        "UPDATE contacts SET change_version = change_version + 1, updated_at = now(),"
        " hubspot_push_due_at = coalesce(hubspot_push_due_at, now())"
        " WHERE id = $1 RETURNING change_version",
        contact_id,
    )
    applied = {r["credit_type"]: r["balance"] for r in changed}
    await conn.execute(
        """
        INSERT INTO audit_log (entity, entity_id, action, entity_version, details, event_id)
        VALUES ('contact', $1, 'credits_changed', $2, $3, $4)
        """,
        contact_id,
        version,
        {"reason": note.reason, "credits": applied, "appVersion": change.version},
        event.id,
    )
    return contact_id


async def handle_credits(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Write every contact's new balances in one transaction.

    One contact, known or new, without names: one statement (``credits_fast.py``),
    or, while this replica is behind, a share of a batch (``credits_batch.py``).
    A batch: set-based statements, seven in all whatever its size
    (``credits_bulk.py``), or the loop below when its changes meet. Idempotent by
    ``event.id`` (the app's idempotency key) and, per field, by the app's version:
    the same notification twice, or an older one after a newer one, changes nothing.
    """
    note = event.data_as(CreditsNotification)
    changes = note.changes()
    if can_take_fast_path(note):
        fast = await deps.credit_batcher.apply(changes[0], note, event)
        if fast.found:
            if fast.changed and fast.contact_id is not None:
                deps.contact_pusher.poke([fast.contact_id])
            if not fast.claimed:
                log.info("credits.duplicate_ignored")
            else:
                log.info(
                    "credits.applied",
                    contacts=1,
                    changed=int(bool(fast.changed)),
                    reason=note.reason,
                )
            return
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, CREDITS.name, event.id):
            log.info("credits.duplicate_ignored")
            return
        # A batch: two set-based statements (credits_bulk.py), unless its changes
        # see each other or a concurrent insert won a race; then the loop, after the
        # batch's contacts are locked in id order.
        due = await apply_batch(conn, changes, note, event) if len(changes) > 1 else None
        set_based = due is not None
        if due is None:
            due = []
            for change in changes:
                contact_id = await apply_change(conn, change, note, event)
                if contact_id is not None:
                    due.append(contact_id)
    deps.contact_pusher.poke(due)  # committed: they are due in Postgres whatever happens
    log.info(
        "credits.applied",
        contacts=len(changes),
        changed=len(due),
        reason=note.reason,
        set_based=set_based,
    )
