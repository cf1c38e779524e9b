"""The credits hot path in one SQL statement: a single-contact notification for a
contact Postgres already knows, or for one it has never seen.

``syncer.credits`` used to spend eight round trips per notification (BEGIN, claim,
find and lock the contact, upsert the balances, bump the contact's version, audit,
outbox, COMMIT), about 3.5 ms of Postgres CPU each at 500/s (issue 11). Here they are
one statement, its own transaction, whose data-modifying CTEs run in the order their
data needs, which is also the lock order of the transactional path: the contact row
(``FOR UPDATE``) first, then the claim of the message, then the balances, then the
version (which marks the contact due for HubSpot, ``hubspot/pusher.py``) and the
audit row. So a duplicate waits on the contact, then finds the claim and changes
nothing; a notification whose versions are all stale claims the message and changes
nothing else.

A contact no key finds is created in the same statement, at ``change_version`` 2 and
due, as the transactional path leaves it (``INSERT ... ON CONFLICT DO NOTHING``: when
another transaction creates it first, this one waits for it on the unique index,
writes nothing and returns ``found=False``). Anything else (a key to learn, names to
record, a batch of contacts) takes the transactional path in ``consumers/credits.py``
(a batch: ``credits_bulk.py``, which locks its contacts in id order before it writes).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared.events import CloudEvent
from shared.messages.credits import CreditChange, CreditsNotification

# $1 hubspot_id, $2 student_id, $3 email (the contact's keys, as resolve_contact matches);
# $4 consumer, $5 event id; $6 credit types (sorted), $7 balances, $8 app version,
# $9 reason, $10 occurred_at; $11 audit details without "credits".
FAST_APPLY_SQL = """
WITH contact AS (
    SELECT id, student_id, email, hubspot_id, change_version FROM contacts
    WHERE ($1::text IS NOT NULL AND hubspot_id = $1)
       OR ($2::text IS NOT NULL AND student_id = $2)
       OR ($3::text IS NOT NULL AND lower(email) = lower($3))
    ORDER BY (hubspot_id = $1) IS TRUE DESC, (student_id = $2) IS TRUE DESC
    LIMIT 1
    FOR UPDATE
), created AS (  -- no row has any of its keys: a new contact, with every balance new
    INSERT INTO contacts (student_id, email, hubspot_id, change_version, hubspot_push_due_at)
    SELECT $2, $3, $1, 2, now()
    WHERE NOT EXISTS (SELECT FROM contact)
      AND NOT EXISTS (SELECT FROM processed_messages WHERE consumer = $4 AND event_id = $5)
    ON CONFLICT DO NOTHING  -- another transaction created it first: the transactional path
    RETURNING id, student_id, email, hubspot_id, change_version
), target AS (  -- a row with a key to learn takes the transactional path
    SELECT *, false AS is_new FROM contact
    WHERE ($1::text IS NULL OR hubspot_id IS NOT NULL)
      AND ($2::text IS NULL OR student_id IS NOT NULL)
      AND ($3::text IS NULL OR email IS NOT NULL)
    UNION ALL
    SELECT *, true FROM created
), claim AS (
    INSERT INTO processed_messages (consumer, event_id)
    SELECT $4, $5 FROM target
    ON CONFLICT DO NOTHING RETURNING true AS claimed
), changed AS (
    INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason, occurred_at)
    SELECT target.id, t.credit_type, t.balance, $8, $9, $10
    FROM target, claim, unnest($6::text[], $7::int[]) AS t(credit_type, balance)
    ON CONFLICT (contact_id, credit_type) DO UPDATE SET
        balance = EXCLUDED.balance, version = EXCLUDED.version, reason = EXCLUDED.reason,
        occurred_at = EXCLUDED.occurred_at, updated_at = now()
    WHERE EXCLUDED.version > contact_credits.version
    RETURNING credit_type, balance
), updated AS (
    UPDATE contacts SET change_version = contacts.change_version + 1, updated_at = now(),
           hubspot_push_due_at = COALESCE(contacts.hubspot_push_due_at, now())
    FROM target WHERE contacts.id = target.id AND NOT target.is_new
      AND EXISTS (SELECT 1 FROM changed)
    RETURNING contacts.id, contacts.change_version
), bumped AS (
    SELECT id, change_version FROM updated
    UNION ALL
    SELECT id, change_version FROM created WHERE EXISTS (SELECT 1 FROM changed)
), audit AS (
    INSERT INTO audit_log (entity, entity_id, action, entity_version, details, event_id)
    SELECT 'contact', bumped.id, 'credits_changed', bumped.change_version,
           $11::jsonb || jsonb_build_object(
               'credits', (SELECT jsonb_object_agg(credit_type, balance) FROM changed)),
           $5
    FROM bumped
)
SELECT target.id, (SELECT count(*) FROM claim) AS claimed,
       (SELECT array_agg(credit_type) FROM changed) AS changed
FROM target
"""


@dataclass(frozen=True)
class FastOutcome:
    """``found``: the contact existed or was created (else nothing was written);
    ``claimed``: the message was new; ``changed``: credit types whose balance was
    written (the contact, ``contact_id``, is then due for HubSpot). From a batch
    (``credits_batch.py``) ``changed`` is the notification's credit types when any of
    them was written: ``APPLY_SQL`` reports changes per contact, not per type."""

    found: bool
    claimed: bool = False
    changed: tuple[str, ...] = ()
    contact_id: int | None = None


def can_take_fast_path(note: CreditsNotification) -> bool:
    """One contact, no names to record: the only case :func:`apply_fast` handles."""
    changes = note.changes()
    if len(changes) != 1:
        return False
    ref = changes[0].contact
    return not (ref.first_name or ref.last_name)


async def apply_fast(
    db: asyncpg.Pool | asyncpg.Connection,
    consumer: str,
    change: CreditChange,
    note: CreditsNotification,
    event: CloudEvent,
) -> FastOutcome:
    """Claim ``event`` and apply ``change`` in one statement (its own transaction).

    A contact no key matches is created. Returns ``found=False``, having written
    nothing, when the matched row lacks a key the notification carries, or another
    transaction created the contact meanwhile (the caller then runs the transactional
    path, which fills the key in or finds that contact).
    """
    ref = change.contact
    fields = sorted(change.credits)  # one lock order for the balances of a contact
    row = await db.fetchrow(
        FAST_APPLY_SQL,
        ref.hubspot_id,
        ref.student_id,
        ref.email,
        consumer,
        event.id,
        fields,
        [change.credits[f] for f in fields],
        change.version,
        note.reason,
        note.occurred_at,
        {"reason": note.reason, "appVersion": change.version},
    )
    if row is None:
        return FastOutcome(found=False)
    return FastOutcome(
        found=True,
        claimed=bool(row["claimed"]),
        changed=tuple(row["changed"] or ()),
        contact_id=row["id"],
    )
