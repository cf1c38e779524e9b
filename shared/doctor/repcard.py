"""RepCard check of ``crmsync doctor``: one read-only list call.

``GET /offices?page=1&per_page=1`` (reference/repcard/NOTES.md lists ``/offices``): the
smallest read the pull's key must be allowed, one request of the key's budget, built
with one try. An empty ``CRMSYNC_REPCARD_API_KEY`` means RepCard is not in use.
"""

from __future__ import annotations

import aiohttp

from shared.clients.repcard import RepCardClient
from shared.doctor.report import Check, Status
from shared.errors import CrmsyncError
from shared.settings import SyncerSettings

NAME, TITLE = "repcard.credentials", "RepCard credentials"


async def check_repcard(http: aiohttp.ClientSession, settings: SyncerSettings) -> list[Check]:
    """``repcard.credentials``: ok with the office count, fail with RepCard's reason."""
    if not settings.repcard_api_key.get_secret_value():
        why = "CRMSYNC_REPCARD_API_KEY is empty: RepCard not in use"
        return [Check(NAME, TITLE, Status.skip, why)]
    client = RepCardClient.from_settings(http, settings, max_tries=1)
    try:
        offices = await client.probe()
    except CrmsyncError as exc:
        status = getattr(exc, "status", None)
        hint = (
            "check CRMSYNC_REPCARD_API_KEY (sent as x-api-key)"
            if status in (401, 403)
            else "check CRMSYNC_REPCARD_BASE_URL, and that RepCard (or the sandbox) is reachable"
        )
        detail = f"{settings.repcard_base_url}: " + (f"HTTP {status}: " if status else "")
        return [Check(NAME, TITLE, Status.fail, detail + str(exc), hint)]
    detail = f"{settings.repcard_base_url} answers the key ({offices} office(s))"
    return [Check(NAME, TITLE, Status.ok, detail)]
