"""One profile's sync: upsert it, find or create its CRM mapping, mirror its packages.

Runs in the caller's transaction on crmsync's database; the first statement upserts the
profile row and so locks it, which serialises two syncs of the same profile (two login
events at once, a login during a bulk run) until the caller commits. The CRM is read
through :class:`~services.syncer.packages.crm.CrmReader` meanwhile; when it does not
answer, :class:`~services.syncer.packages.crm.CrmUnavailableError` (a
``TransientError``) propagates, the caller rolls back, and nothing is half-written.
"""

from __future__ import annotations

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

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProfileData:
    """The app's profile as an event carries it.

    A field left None keeps what crmsync already has (an event may carry only some
    fields), so a bulk run may pass ``ProfileData(profile_id)`` alone.
    """

    profile_id: str
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    last_login_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProfileSyncResult:
    """What one :func:`sync_profile` did.

    Attributes:
        crm_customer_id: the mapped CRM customer; None when unmatched.
        method: how that mapping was made (``email``/``phone``/``name``), also when an
            earlier sync made it.
        matched_now: this call made the mapping (first match, or a retry that worked).
        unmatched_reason: why there is no mapping; None when matched.
        packages: packages the CRM has for the customer now (any status).
        changed: package rows inserted or updated by this call.
        removed: package rows newly marked removed (gone from the CRM).
    """

    profile_id: str
    crm_customer_id: str | None
    method: Method | None
    matched_now: bool
    unmatched_reason: str | None
    packages: int
    changed: int
    removed: int

    @property
    def unmatched(self) -> bool:
        return self.crm_customer_id is None


async def sync_profile(
    conn: asyncpg.Connection, crm: CrmReader, profile: ProfileData, *, now: datetime
) -> ProfileSyncResult:
    """Sync one profile with the CRM; idempotent, in the caller's transaction.

    1. Upsert the profile (fields left None keep their stored value).
    2. Reuse its mapping; match (email → phone → unique full name) when there is none,
       when it is ``unmatched`` (every call retries it), or when the mapped customer is
       gone from the CRM (merged or deleted).
    3. Upsert the customer's packages by CRM package id; mark the profile's other
       packages removed (``removed_at = now``); a package that comes back is un-removed.

    Args:
        conn: a connection to crmsync's database, inside a transaction.
        crm: the CRM reader; its ``default_region`` also reads the profile's phone.
        profile: the app's profile.
        now: the sync's time (``matched_at``, ``last_attempt_at``, ``removed_at``...).

    Raises:
        CrmUnavailableError: the CRM is unreachable or timed out; roll back and retry.
    """
    phone_e164 = normalise_phone(profile.phone, crm.default_region)
    row = await store.upsert_profile(
        conn,
        profile.profile_id,
        email=profile.email,
        phone=profile.phone,
        phone_e164=phone_e164,
        first_name=profile.first_name,
        last_name=profile.last_name,
        last_login_at=profile.last_login_at,
    )
    customer_id: str | None = row["crm_customer_id"] if row["status"] == "matched" else None
    method: Method | None = row["method"] if customer_id is not None else None
    packages: list[CrmPackage] | None = None
    if customer_id is not None:
        packages = await crm.customer_packages(customer_id)
        if packages is None:
            log.warning("crm_mapping.customer_gone", crm_customer_id=customer_id)

    match: MatchResult | None = None
    if packages is None:
        keys = MatchKeys.of(
            email=row["email"],
            phone_e164=row["phone_e164"],
            first_name=row["first_name"],
            last_name=row["last_name"],
        )
        match = await match_customer(crm, keys)
        if match.customer_id is not None:
            packages = await crm.customer_packages(match.customer_id)
            if packages is None:  # deleted between the two reads
                match = unmatched("CRM customer disappeared while matching")
        match = await _record_mapping(conn, profile.profile_id, match, now)
        customer_id, method = match.customer_id, match.method

    if customer_id is None or packages is None:
        assert match is not None
        # Whatever the profile held (a customer now gone, a mapping deleted by hand to
        # redo a wrong match) is no longer known to be its.
        removed = await store.remove_all_packages(conn, profile.profile_id, now)
        return ProfileSyncResult(
            profile.profile_id,
            crm_customer_id=None,
            method=None,
            matched_now=False,
            unmatched_reason=match.reason,
            packages=0,
            changed=0,
            removed=removed,
        )
    changed, removed = await store.write_packages(
        conn, profile.profile_id, customer_id, packages, now
    )
    return ProfileSyncResult(
        profile.profile_id,
        crm_customer_id=customer_id,
        method=method,
        matched_now=match is not None,
        unmatched_reason=None,
        packages=len(packages),
        changed=changed,
        removed=removed,
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
