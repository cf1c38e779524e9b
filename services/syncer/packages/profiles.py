"""What a W1 sync takes and gives: the app's profile, the sync's result, its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.syncer.packages.matching import Method
from shared.errors import PermanentError, TransientError


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
        superseded: a concurrent sync whose CRM read started later had already
            written; this one wrote nothing (``changed`` and ``removed`` are 0).
    """

    profile_id: str
    crm_customer_id: str | None
    method: Method | None
    matched_now: bool
    unmatched_reason: str | None
    packages: int
    changed: int
    removed: int
    superseded: bool = False

    @property
    def unmatched(self) -> bool:
        return self.crm_customer_id is None


class ProfileNotFoundError(PermanentError):
    """``sync_profile(create=False)`` for a profile crmsync does not have."""

    def __init__(self, profile_id: str) -> None:
        super().__init__(f"no profile {profile_id!r}")
        self.profile_id = profile_id


class ProfileSyncConflictError(TransientError):
    """Concurrent syncs kept changing the profile's keys or mapping; retry later."""
