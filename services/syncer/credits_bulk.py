"""A batch of credit changes (a bulk refund of up to ``MAX_BATCH`` contacts) in two
set-based statements, whatever the batch size.

The per-contact loop (``consumers/credits.py``) spends about eight round trips per
contact inside one transaction: 8,000 for a bulk refund of 1,000 (issue 11). Here,
in the caller's transaction, after its claim of the message:

1. ``LOCK_SQL`` locks every contact that any key of the batch names (HubSpot id,
   student id, email case-insensitively) **in id order**, before any other row of
   theirs: the fast path locks its one contact first too, and the loop runs a batch
   only after this lock, so two batches over overlapping contacts, or a batch and
   single notifications, queue instead of deadlocking. (The claim comes before it, as
   in the loop: only a redelivery of the same batch waits on that row, and it holds
   nothing yet.) From the locked rows (their latest versions) it resolves each change
   as ``resolve_contact`` does: HubSpot id, then student id, then email; a row lacking
   a key the change carries learns it, with the names, unless the key belongs to
   another contact; no match means a new contact.
2. ``APPLY_SQL``, one statement of data-modifying CTEs: creates the new contacts (in
   batch order, as the loop would number them), upserts the balances with the per
   field guard ``EXCLUDED.version > contact_credits.version``, fills in the keys and
   names step 1 found to learn, bumps ``change_version`` of each contact whose
   balances changed (a new one starts at 2, as the loop leaves it) and marks it due
   for HubSpot (``hubspot/pusher.py``), and writes one audit row per contact that
   changed (batch order). A contact whose fields were all stale gets none of them.

Seven statements for any batch: BEGIN, the claim, ``LOCK_SQL``, SAVEPOINT,
``APPLY_SQL``, RELEASE, COMMIT (the loop: 5 to 8 per contact).

Changes that interact (two of them share a key, or resolve to the same contact) would
see each other in the loop; :func:`apply_batch` then returns None and the caller runs
the loop, still after step 1's locks. A concurrent transaction that creates one of
the batch's new contacts (or takes a key it would learn) makes step 2 fail on a unique
index (or, creating several in another order, deadlock): step 2 runs in a savepoint,
is rolled back and :func:`apply_batch` returns None, and the loop, whose
``resolve_contact`` handles that race, does the work.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.events import CloudEvent
from shared.messages.credits import CreditChange, CreditsNotification

# $1 hubspot ids, $2 student ids, $3 emails, $4 first names, $5 last names: one element
# per change, in batch order (NULL where not given).
# Returns one row per change: its 1-based ``idx``, the matched contact ``id`` (NULL:
# new), ``fill`` (the keys/names update resolve_contact would make succeeds), and, on
# every row, ``collide`` (changes that would see each other in the loop) and ``locked``
# (rows locked; reading it makes the locking CTE run to its end).
LOCK_SQL = """
WITH ref AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        WITH ORDINALITY AS r(hubspot_id, student_id, email, first_name, last_name, idx)
), locked AS MATERIALIZED (
    SELECT id, hubspot_id, student_id, email FROM contacts
    WHERE hubspot_id = ANY($1::text[]) OR student_id = ANY($2::text[])
       OR lower(email) = ANY(ARRAY(SELECT lower(e) FROM unnest($3::text[]) AS e))
    ORDER BY id
    FOR UPDATE
), cand AS MATERIALIZED (  -- each change's matches, by which key (1 HubSpot id, ...)
    SELECT ref.*, l.id, l.hubspot_id AS l_hubspot_id, l.student_id AS l_student_id,
           l.email AS l_email, 1 AS rank
    FROM ref JOIN locked AS l ON l.hubspot_id = ref.hubspot_id
    UNION ALL
    SELECT ref.*, l.id, l.hubspot_id, l.student_id, l.email, 2
    FROM ref JOIN locked AS l ON l.student_id = ref.student_id
    UNION ALL
    SELECT ref.*, l.id, l.hubspot_id, l.student_id, l.email, 3
    FROM ref JOIN locked AS l ON lower(l.email) = lower(ref.email)
), hit AS (  -- resolve_contact's precedence: HubSpot id, then student id, then email
    SELECT DISTINCT ON (idx) * FROM cand ORDER BY idx, rank
), fill AS (  -- a key to learn that another contact holds: the loop's update fails whole
    SELECT hit.idx,
        ((hit.l_hubspot_id IS NULL AND hit.hubspot_id IS NOT NULL)
         OR (hit.l_student_id IS NULL AND hit.student_id IS NOT NULL)
         OR (hit.l_email IS NULL AND hit.email IS NOT NULL)
         OR coalesce(hit.first_name, '') <> '' OR coalesce(hit.last_name, '') <> '')
        AND NOT coalesce(bool_or((hit.l_hubspot_id IS NULL AND o.rank = 1)
                                 OR (hit.l_student_id IS NULL AND o.rank = 2)
                                 OR (hit.l_email IS NULL AND o.rank = 3)), false) AS fill
    FROM hit LEFT JOIN cand AS o ON o.idx = hit.idx AND o.id <> hit.id
    GROUP BY hit.idx, hit.l_hubspot_id, hit.l_student_id, hit.l_email, hit.hubspot_id,
             hit.student_id, hit.email, hit.first_name, hit.last_name
), collide AS (
    SELECT EXISTS (SELECT FROM ref WHERE hubspot_id IS NOT NULL
                   GROUP BY hubspot_id HAVING count(*) > 1)
        OR EXISTS (SELECT FROM ref WHERE student_id IS NOT NULL
                   GROUP BY student_id HAVING count(*) > 1)
        OR EXISTS (SELECT FROM ref WHERE email IS NOT NULL
                   GROUP BY lower(email) HAVING count(*) > 1)
        OR EXISTS (SELECT FROM hit GROUP BY id HAVING count(*) > 1) AS collide
)
SELECT ref.idx, hit.id, coalesce(fill.fill, false) AS fill,
       (SELECT collide FROM collide) AS collide, (SELECT count(*) FROM locked) AS locked
FROM ref LEFT JOIN hit USING (idx) LEFT JOIN fill USING (idx)
ORDER BY ref.idx
"""

# Per change, in batch order: $1 contact id (NULL: create it), $2 fill (learn keys and
# names), $3 hubspot id, $4 student id, $5 email, $6 first name, $7 last name, $8 app
# version. Per balance: $9 its change's 1-based index, $10 credit type, $11 balance.
# Per change again: $12 reason, $13 occurred_at, $14 event id (a bulk refund repeats
# its own; ``credits_batch.py`` gives each notification's).
# Returns the ids of the contacts that changed and the 1-based indexes of their
# changes, both in batch order (NULL: none).
APPLY_SQL = """
WITH ref AS (
    SELECT * FROM unnest($1::bigint[], $2::bool[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::bigint[], $12::text[],
                         $13::timestamptz[], $14::text[])
        WITH ORDINALITY AS r(contact_id, fill, hubspot_id, student_id, email,
                             first_name, last_name, version, reason, occurred_at,
                             event_id, idx)
), created AS (  -- new contacts start at change_version 2: all their balances are new
    INSERT INTO contacts (student_id, email, hubspot_id, first_name, last_name, change_version,
                          hubspot_push_due_at)
    SELECT student_id, email, hubspot_id, first_name, last_name, 2, now()
    FROM ref WHERE contact_id IS NULL ORDER BY idx
    RETURNING id, hubspot_id, student_id, email
), target AS (  -- no two changes share a key (LOCK_SQL), so the keys find the row
    SELECT ref.*, coalesce(ref.contact_id, c.id) AS id, ref.contact_id IS NULL AS is_new
    FROM ref LEFT JOIN created AS c ON ref.contact_id IS NULL  -- '' is no key: a hash join
     AND coalesce(c.hubspot_id, '') = coalesce(ref.hubspot_id, '')
     AND coalesce(c.student_id, '') = coalesce(ref.student_id, '')
     AND coalesce(c.email, '') = coalesce(ref.email, '')
), changed AS (
    INSERT INTO contact_credits (contact_id, credit_type, balance, version, reason, occurred_at)
    SELECT target.id, e.credit_type, e.balance, target.version, target.reason,
           target.occurred_at
    FROM unnest($9::bigint[], $10::text[], $11::int[]) AS e(idx, credit_type, balance)
    JOIN target USING (idx)
    ORDER BY target.id, e.credit_type
    ON CONFLICT (contact_id, credit_type) DO UPDATE SET
        balance = EXCLUDED.balance, version = EXCLUDED.version, reason = EXCLUDED.reason,
        occurred_at = EXCLUDED.occurred_at, updated_at = now()
    WHERE EXCLUDED.version > contact_credits.version
    RETURNING contact_id, credit_type, balance
), applied AS (
    SELECT contact_id AS id, jsonb_object_agg(credit_type, balance) AS credits
    FROM changed GROUP BY contact_id
), bumped AS (  -- existing contacts: learn keys and names, and/or bump the version
    UPDATE contacts SET
        hubspot_id = CASE WHEN t.fill THEN coalesce(contacts.hubspot_id, t.hubspot_id)
                          ELSE contacts.hubspot_id END,
        student_id = CASE WHEN t.fill THEN coalesce(contacts.student_id, t.student_id)
                          ELSE contacts.student_id END,
        email = CASE WHEN t.fill THEN coalesce(contacts.email, t.email) ELSE contacts.email END,
        first_name = CASE WHEN t.fill THEN coalesce(t.first_name, contacts.first_name)
                          ELSE contacts.first_name END,
        last_name = CASE WHEN t.fill THEN coalesce(t.last_name, contacts.last_name)
                         ELSE contacts.last_name END,
        change_version = contacts.change_version + (a.id IS NOT NULL)::int,
        hubspot_push_due_at = CASE WHEN a.id IS NOT NULL
                                   THEN coalesce(contacts.hubspot_push_due_at, now())
                                   ELSE contacts.hubspot_push_due_at END,
        updated_at = now()
    FROM target AS t LEFT JOIN applied AS a USING (id)
    WHERE contacts.id = t.id AND NOT t.is_new AND (t.fill OR a.id IS NOT NULL)
    RETURNING contacts.id, contacts.change_version, a.id IS NOT NULL AS changed
), pushes AS (
    SELECT t.idx, t.id, t.version, t.reason, t.event_id, a.credits, v.change_version
    FROM target AS t JOIN applied AS a USING (id)
    JOIN (SELECT id, change_version FROM bumped WHERE changed
          UNION ALL SELECT id, 2 FROM target WHERE is_new) AS v USING (id)
), audit AS (
    INSERT INTO audit_log (entity, entity_id, action, entity_version, details, event_id)
    SELECT 'contact', id, 'credits_changed', change_version,
           jsonb_build_object('reason', reason, 'credits', credits, 'appVersion', version),
           event_id
    FROM pushes ORDER BY idx
)
SELECT array_agg(id ORDER BY idx) AS ids, array_agg(idx ORDER BY idx) AS idxs FROM pushes
"""


async def lock_contacts(
    conn: asyncpg.Connection, changes: list[CreditChange]
) -> list[asyncpg.Record]:
    """Run ``LOCK_SQL`` for ``changes`` in the caller's transaction: every contact any
    of their keys names is locked, in id order. Returns its rows (one per change)."""
    refs = [c.contact for c in changes]
    rows: list[asyncpg.Record] = await conn.fetch(
        LOCK_SQL,
        [r.hubspot_id for r in refs],
        [r.student_id for r in refs],
        [r.email for r in refs],
        [r.first_name for r in refs],
        [r.last_name for r in refs],
    )
    return rows


async def apply_batch(
    conn: asyncpg.Connection,
    changes: list[CreditChange],
    note: CreditsNotification,
    event: CloudEvent,
) -> list[int] | None:
    """Apply every change of ``note`` in two statements, in the caller's transaction
    (which has claimed ``event``), with the end state the per-contact loop gives.

    Returns the ids of the contacts whose balances changed (due for HubSpot, in batch
    order), or None, having locked the batch's contacts (in id order) and written
    nothing else, when the loop must run: changes that share a key or a contact, or a
    concurrent transaction that created one of the new contacts first (see the module
    docstring).
    """
    n = len(changes)
    applied = await apply_changes(
        conn, changes, [note.reason] * n, [note.occurred_at] * n, [event.id] * n
    )
    return None if applied is None else [contact_id for _, contact_id in applied]


async def apply_changes(
    conn: asyncpg.Connection,
    changes: list[CreditChange],
    reasons: list[str],
    occurred_at: list[datetime],
    event_ids: list[str],
    *,
    savepoint: bool = True,
    resolved: list[asyncpg.Record] | None = None,
) -> list[tuple[int, int]] | None:
    """``LOCK_SQL`` then ``APPLY_SQL`` for ``changes``, each with its own reason,
    time and event id (the audit row's), in the caller's transaction.

    Returns ``(index, contact id)`` for each change whose balances changed (0-based
    index into ``changes``, in order), or None when the loop must run (changes that
    see each other, a lost race: see the module docstring). With ``savepoint=False``
    the caller rolls its whole transaction back on None (``credits_batch.py``: one
    statement fewer each way); with a savepoint only ``APPLY_SQL`` is undone.
    ``resolved``: :func:`lock_contacts`'s rows for ``changes`` when the caller has
    locked them already (and checked ``collide``).
    """
    if resolved is None:
        resolved = await lock_contacts(conn, changes)
        if resolved and resolved[0]["collide"]:
            return None
    entries = [
        (i, field, change.credits[field])
        for i, change in enumerate(changes, start=1)
        for field in sorted(change.credits)
    ]
    refs = [c.contact for c in changes]
    args = (
        [r["id"] for r in resolved],
        [r["fill"] for r in resolved],
        [r.hubspot_id for r in refs],
        [r.student_id for r in refs],
        [r.email for r in refs],
        [r.first_name for r in refs],
        [r.last_name for r in refs],
        [c.version for c in changes],
        [e[0] for e in entries],
        [e[1] for e in entries],
        [e[2] for e in entries],
        reasons,
        occurred_at,
        event_ids,
    )
    try:
        if savepoint:
            async with conn.transaction():  # on a lost race, the loop's turn
                row = await conn.fetchrow(APPLY_SQL, *args)
        else:
            row = await conn.fetchrow(APPLY_SQL, *args)
    except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
        return None
    assert row is not None
    return [
        (idx - 1, contact_id)
        for idx, contact_id in zip(row["idxs"] or (), row["ids"] or (), strict=True)
    ]
