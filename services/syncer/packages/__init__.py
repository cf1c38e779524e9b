"""W1, CRM package sync: match app profiles to CRM customers, mirror their packages.

- :mod:`.crm`: the read-only CRM database (two views) behind a bounded pool.
- :mod:`.matching`: email / phone (E.164) / name normalisation and the match rules.
- :mod:`.sync`: :func:`sync_profile`, one profile in the caller's transaction.
"""

from services.syncer.packages.crm import (
    CrmReader,
    CrmUnavailableError,
    create_crm_pool,
)
from services.syncer.packages.sync import ProfileData, ProfileSyncResult, sync_profile

__all__ = [
    "CrmReader",
    "CrmUnavailableError",
    "ProfileData",
    "ProfileSyncResult",
    "create_crm_pool",
    "sync_profile",
]
