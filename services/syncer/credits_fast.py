"""The credits hot path in one SQL statement: a single-contact notification for a
contact Postgres already knows.

``syncer.credits`` used to spend eight round trips per notification (BEGIN, claim,
find and lock the contact, upsert the balances, bump the contact's version, audit,
outbox, COMMIT), about 3.5 ms of Postgres CPU each at 500/s (issue 11). Here they are
one statement, its own transaction, whose data-modifying CTEs run in the order their
data needs, which is also the lock order of the transactional path: the contact row
(``FOR UPDATE``) first, then the claim of the message, then the balances, then the
version, the audit row and the outbox row. So a duplicate waits on the contact, then
finds the claim and changes nothing; a notification whose versions are all stale
claims the message and changes nothing else. Anything else (a new contact, a key to
learn, a batch of contacts) takes the transactional path in ``consumers/credits.py``
(a batch: ``credits_bulk.py``, which locks its contacts in id order before it writes).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared.events import CloudEvent
from shared.messages.credits import CONTACT_PUSH, CreditChange, CreditsNotification
from shared.outbox import CORRELATION_HEADER, ID_HEADER, SUBJECT_HEADER, headers_but_ids

# $1 hubspot_id, $2 student_id, $3 email (the contact's keys, as resolve_contact matches);
# $4 consumer, $5 event id; $6 credit types (sorted), $7 balances, $8 app version,
# $9 reason, $10 occurred_at; $11 audit details without "credits"; $12 the push
# event's headers without id and subject (and correlation id when $16 is true); $13 its
# routing key; $14, $15, $17 the names of its id, subject and correlation id headers;
# $16 the push's correlation id is its own id (the notification has none).
FAST_APPLY_SQL = """
WITH contact AS (
    SELECT id, student_id, email, hubspot_id, change_version FROM contacts
    WHERE ($1::text IS NOT NULL AND hubspot_id = $1)
       OR ($2::text IS NOT NULL AND student_id = $2)
       OR ($3::text IS NOT NULL AND lower(email) = lower($3))
    ORDER BY (hubspot_id = $1) IS TRUE DESC, (student_id = $2) IS TRUE DESC
    LIMIT 1
    FOR UPDATE
), target AS (  -- a row with a key to learn takes the transactional path
    SELECT * FROM contact
    WHERE ($1::text IS NULL OR hubspot_id IS NOT NULL)
      AND ($2::text IS NULL OR student_id IS NOT NULL)
      AND ($3::text IS NULL OR email IS NOT NULL)
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
), bumped AS (
    UPDATE contacts SET change_version = contacts.change_version + 1, updated_at = now()
    FROM target WHERE contacts.id = target.id AND EXISTS (SELECT 1 FROM changed)
    RETURNING contacts.id, contacts.change_version,
              'contact-push-' || contacts.id || '-' || contacts.change_version AS push_id
), audit AS (
    INSERT INTO audit_log (entity, entity_id, action, entity_version, details, event_id)
    SELECT 'contact', bumped.id, 'credits_changed', bumped.change_version,
           $11::jsonb || jsonb_build_object(
               'credits', (SELECT jsonb_object_agg(credit_type, balance) FROM changed)),
           $5
    FROM bumped
), pushed AS (
    INSERT INTO outbox (event_id, routing_key, headers, body, content_type)
    SELECT bumped.push_id, $13,
           $12::jsonb || jsonb_build_object($14::text, bumped.push_id, $15::text, bumped.id::text)
           || CASE WHEN $16::bool THEN jsonb_build_object($17::text, bumped.push_id)
                   ELSE '{}'::jsonb END,
           convert_to(jsonb_build_object('contactId', bumped.id)::text, 'UTF8'),
           'application/json'
    FROM bumped
    ON CONFLICT (event_id) DO NOTHING
)
SELECT target.id, (SELECT count(*) FROM claim) AS claimed,
       (SELECT array_agg(credit_type) FROM changed) AS changed
FROM target
"""


@dataclass(frozen=True)
class FastOutcome:
    """``found``: the contact existed (else nothing was written); ``claimed``: the
    message was new; ``changed``: credit types whose balance was written."""

    found: bool
    claimed: bool = False
    changed: tuple[str, ...] = ()


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

    Returns ``found=False``, having written nothing, when no contact matches or the
    matched row lacks a key the notification carries (the caller then runs the
    transactional path, which creates the contact or fills the key in).
    """
    ref = change.contact
    fields = sorted(change.credits)  # one lock order for the balances of a contact
    template = headers_but_ids(
        type=CONTACT_PUSH, source="urn:crmsync:syncer", correlationid=event.correlationid
    )
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
        template,
        CONTACT_PUSH,
        ID_HEADER,
        SUBJECT_HEADER,
        event.correlationid is None,
        CORRELATION_HEADER,
    )
    if row is None:
        return FastOutcome(found=False)
    return FastOutcome(
        found=True, claimed=bool(row["claimed"]), changed=tuple(row["changed"] or ())
    )
