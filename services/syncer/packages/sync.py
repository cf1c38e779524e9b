"""One profile's sync: read what crmsync knows, read the CRM, write in a short transaction.

No connection to crmsync's database is held while the CRM is read, so a slow CRM slows
only the syncs waiting for it, never unrelated work (issue 8, isolation). Three steps:

1. **read** (one statement, no transaction): the profile's stored keys and mapping, and
   a ticket from the ``crm_read_tickets`` sequence;
2. **CRM** (crmsync's pool untouched): the mapped customer's packages, or a match
   (email → phone → unique full name) and the matched customer's packages;
3. **write** (one short transaction): upsert the profile, lock its row and check what
   step 1 assumed, the keys the match used and the mapping. If a concurrent sync changed
   either, start again from step 1 (at most :data:`MAX_ROUNDS` times, then
   :class:`ProfileSyncConflictError`, a ``TransientError``). If a sync with a newer
   ticket has already written, its CRM read started after ours: keep its data and write
   nothing (``superseded``). Otherwise write the mapping and the packages, and record the
   ticket.

So two syncs of one profile (two logins at once, a login during a bulk run) never
interleave into a wrong result: the stored packages are those of the CRM read that
started last, for the customer the profile's current keys match. A CRM that does not
answer raises :class:`~services.syncer.packages.crm.CrmUnavailableError` (a
``TransientError``) before anything is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from services.syncer.packages import store
from services.syncer.packages.crm import CrmPackage, CrmReader
from services.syncer.packages.matching import (
    MatchKeys,
    MatchResult,
    Method,
    match_customer,
    normalise_phone,
    unmatched,
)
from services.syncer.packages.profiles import (
    ProfileData,
    ProfileNotFoundError,
    ProfileSyncConflictError,
    ProfileSyncResult,
)

log = structlog.get_logger(__name__)


# Write attempts of one sync before it gives up to a later retry (each is a CRM read).
MAX_ROUNDS = 3

# Called inside the write transaction, after the sync's writes (or none, when superseded).
WriteHook = Callable[[asyncpg.Connection, ProfileSyncResult], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _CrmRead:
    """What step 2 found, and what step 1 assumed when it started."""

    ticket: int
    keys: tuple[str | None, str | None, str | None, str | None]
    seen_mapping: tuple[str | None, str | None]
    customer_id: str | None
    method: Method | None
    packages: list[CrmPackage] | None
    match: MatchResult | None


async def sync_profile(
    pool: asyncpg.Pool,
    crm: CrmReader,
    profile: ProfileData,
    *,
    now: datetime,
    create: bool = True,
    on_write: WriteHook | None = None,
) -> ProfileSyncResult:
    """Sync one profile with the CRM; idempotent. The steps are in the module docstring.

    1. Upsert the profile (fields left None keep their stored value).
    2. Reuse its mapping; match (email → phone → unique full name) when there is none,
       when it is ``unmatched`` (every call retries it), or when the mapped customer is
       gone from the CRM (merged or deleted).
    3. Upsert the customer's packages by CRM package id; mark the profile's other
       packages removed (``removed_at = now``); a package that comes back is un-removed.

    Args:
        pool: crmsync's pool; a connection is taken only for step 1 and for the write.
        crm: the CRM reader; its ``default_region`` also reads the profile's phone.
        profile: the app's profile.
        now: the sync's time (``matched_at``, ``last_attempt_at``, ``removed_at``...).
        create: False: only sync a profile crmsync already has (refresh, bulk run).
        on_write: awaited in the write transaction with the result (an idempotency
            claim, a refresh's bookkeeping), so it commits with the sync or not at all.

    Raises:
        CrmUnavailableError: the CRM is unreachable or timed out; nothing was written.
        ProfileNotFoundError: ``create`` is False and there is no such profile.
        ProfileSyncConflictError: concurrent syncs changed the profile every round.
    """
    phone_e164 = normalise_phone(profile.phone, crm.default_region)
    for _ in range(MAX_ROUNDS):
        read = await _read(pool, crm, profile, phone_e164, create=create)
        async with pool.acquire() as conn, conn.transaction():
            result = await _write(conn, profile, phone_e164, read, now, create=create)
            if result is not None and on_write is not None:
                await on_write(conn, result)
        if result is not None:
            return result
        log.info("packages.sync_raced", profile_id=profile.profile_id)
    raise ProfileSyncConflictError(
        f"profile {profile.profile_id}: keys or mapping changed by concurrent syncs "
        f"{MAX_ROUNDS} times; retry later"
    )


async def _read(
    pool: asyncpg.Pool,
    crm: CrmReader,
    profile: ProfileData,
    phone_e164: str | None,
    *,
    create: bool,
) -> _CrmRead:
    """Steps 1 and 2: what crmsync has (no transaction), then the CRM (no connection)."""
    row = await store.read_profile(pool, profile.profile_id)
    if not row["found"] and not create:
        raise ProfileNotFoundError(profile.profile_id)
    keys = _merged_keys(profile, phone_e164, row)
    seen = (row["status"], row["crm_customer_id"])
    customer_id: str | None = row["crm_customer_id"] if row["status"] == "matched" else None
    method: Method | None = row["method"] if customer_id is not None else None
    packages: list[CrmPackage] | None = None
    if customer_id is not None:
        packages = await crm.customer_packages(customer_id)
        if packages is None:
            log.warning("crm_mapping.customer_gone", crm_customer_id=customer_id)
    match: MatchResult | None = None
    if packages is None:
        email, phone, first_name, last_name = keys
        match_keys = MatchKeys.of(
            email=email, phone_e164=phone, first_name=first_name, last_name=last_name
        )
        match = await match_customer(crm, match_keys)
        if match.customer_id is not None:
            packages = await crm.customer_packages(match.customer_id)
            if packages is None:  # deleted between the two reads
                match = unmatched("CRM customer disappeared while matching")
        customer_id, method = match.customer_id, match.method
    return _CrmRead(int(row["ticket"]), keys, seen, customer_id, method, packages, match)


def _merged_keys(
    profile: ProfileData, phone_e164: str | None, row: asyncpg.Record
) -> tuple[str | None, str | None, str | None, str | None]:
    """The keys the profile has once this event's fields are upserted (store's rules)."""

    def pick(given: str | None, stored: str | None) -> str | None:
        return given if given is not None else stored

    return (
        pick(profile.email, row["email"]),
        phone_e164 if profile.phone is not None else row["phone_e164"],
        pick(profile.first_name, row["first_name"]),
        pick(profile.last_name, row["last_name"]),
    )


async def _write(
    conn: asyncpg.Connection,
    profile: ProfileData,
    phone_e164: str | None,
    read: _CrmRead,
    now: datetime,
    *,
    create: bool,
) -> ProfileSyncResult | None:
    """Step 3, in the caller's transaction; None when step 1's assumptions no longer hold."""
    if create:
        await store.upsert_profile(
            conn,
            profile.profile_id,
            email=profile.email,
            phone=profile.phone,
            phone_e164=phone_e164,
            first_name=profile.first_name,
            last_name=profile.last_name,
            last_login_at=profile.last_login_at,
        )
    locked = await store.lock_profile(conn, profile.profile_id)
    if locked is None:
        raise ProfileNotFoundError(profile.profile_id)
    stored_keys = (locked["email"], locked["phone_e164"], locked["first_name"], locked["last_name"])
    outcome = read.seen_mapping
    if read.match is not None:
        outcome = ("matched", read.match.customer_id) if read.match.matched else ("unmatched", None)
    stored_mapping = (locked["status"], locked["crm_customer_id"])
    if stored_keys != read.keys or stored_mapping not in (read.seen_mapping, outcome):
        return None
    if locked["crm_read_ticket"] > read.ticket:
        # A sync whose CRM read started after ours has written: its data stands.
        return _result(profile.profile_id, read, 0, 0, superseded=True)
    match = read.match
    customer_id = read.customer_id
    if match is not None:
        match = await _record_mapping(conn, profile.profile_id, match, now)
        customer_id = match.customer_id
    await store.record_read(conn, profile.profile_id, read.ticket)
    if customer_id is None or read.packages is None:
        # Whatever the profile held (a customer now gone, a mapping deleted by hand to
        # redo a wrong match) is no longer known to be its.
        removed = await store.remove_all_packages(conn, profile.profile_id, now)
        assert match is not None
        return ProfileSyncResult(
            profile.profile_id, crm_customer_id=None, method=None, matched_now=False,
            unmatched_reason=match.reason, packages=0, changed=0, removed=removed,
        )  # fmt: skip
    changed, removed = await store.write_packages(
        conn, profile.profile_id, customer_id, read.packages, now
    )
    return _result(profile.profile_id, read, changed, removed)


def _result(
    profile_id: str, read: _CrmRead, changed: int, removed: int, *, superseded: bool = False
) -> ProfileSyncResult:
    return ProfileSyncResult(
        profile_id,
        crm_customer_id=read.customer_id if read.packages is not None else None,
        method=read.method if read.packages is not None else None,
        matched_now=read.match is not None and read.match.matched,
        unmatched_reason=read.match.reason if read.match is not None else None,
        packages=len(read.packages or []),
        changed=changed,
        removed=removed,
        superseded=superseded,
    )


async def _record_mapping(
    conn: asyncpg.Connection, profile_id: str, match: MatchResult, now: datetime
) -> MatchResult:
    """Upsert the mapping; a customer already mapped to another profile → unmatched."""
    if match.customer_id is not None:
        try:
            # A savepoint: the unique index on the customer may refuse the row.
            async with conn.transaction():
                await store.upsert_mapping(conn, profile_id, match, now)
            log.info("crm_mapping.matched", crm_customer_id=match.customer_id, method=match.method)
            return match
        except asyncpg.UniqueViolationError:
            holder = await store.mapped_profile(conn, match.customer_id)
            match = unmatched(
                f"CRM customer {match.customer_id} ({match.method}) is mapped to profile {holder}"
            )
    await store.upsert_mapping(conn, profile_id, match, now)
    log.info("crm_mapping.unmatched", reason=match.reason)
    return match
