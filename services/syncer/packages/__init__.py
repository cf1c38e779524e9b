"""W1, CRM package sync: match app profiles to CRM customers, mirror their packages.

- :mod:`.crm`: the read-only CRM database (two views) behind a bounded pool.
- :mod:`.matching`: email / phone (E.164) / name normalisation and the match rules.
- :mod:`.sync`: :func:`sync_profile`, one profile: the CRM read with no connection to
  crmsync's database held, then one short write transaction.
"""

from services.syncer.packages.crm import (
    CrmReader,
    CrmUnavailableError,
    create_crm_pool,
)
from services.syncer.packages.profiles import (
    ProfileData,
    ProfileNotFoundError,
    ProfileSyncConflictError,
    ProfileSyncResult,
)
from services.syncer.packages.sync import sync_profile

__all__ = [
    "CrmReader",
    "CrmUnavailableError",
    "ProfileData",
    "ProfileNotFoundError",
    "ProfileSyncConflictError",
    "ProfileSyncResult",
    "create_crm_pool",
    "sync_profile",
]
