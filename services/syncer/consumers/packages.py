"""W1 package sync for one profile: on login, on booking created, on demand.

- ``syncer.logins`` (``app.login``, ``app.booking.created``): sync the profile. The
  app never waits for it.
- ``syncer.packages.refreshes`` (``app.packages.refresh``): sync, record the request
  in ``package_refreshes`` and answer the waiting intake (request/reply) with the
  packages; an intake that stopped waiting reads the row later.
- ``syncer.packages.refresh_status``: answer how a refresh request is doing.

The CRM is read with no connection to crmsync's database held (``sync_profile``); the
idempotency claim commits in the sync's short write transaction, so a redelivered login
re-syncs nothing twice (and a sync is idempotent anyway). A CRM that is slow or down
raises a TransientError: the message is retried later, nothing half-written.

A refresh of a profile crmsync does not have creates nothing: the caller is answered
``{"error": "profile_not_found"}`` (intake turns it into a 404) and the request row
ends ``failed``. A booking without a student id starts no package sync: the app's
profile id *is* the student id, and an email is not one (it would create a profile the
app does not have). It is logged (``packages.booking_without_student_id``) and counted
(``crmsync_package_syncs_skipped_total{reason="no_student_id"}``); the booking itself is
still applied by ``syncer.bookings``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from services.syncer.deps import SyncerDeps
from services.syncer.packages.profiles import ProfileData, ProfileNotFoundError, ProfileSyncResult
from services.syncer.packages.sync import sync_profile
from shared.consumer import Delivery
from shared.db import already_processed, claim_message
from shared.errors import InvalidEventError
from shared.events import CloudEvent
from shared.messages.credits import BookingEvent
from shared.messages.profiles import (
    LOGIN,
    REFRESH_PROFILE_NOT_FOUND,
    LoginEvent,
    PackagesRefresh,
    RefreshStatusQuery,
)
from shared.queues import LOGINS

log = structlog.get_logger(__name__)

SYNCS_SKIPPED = Counter(
    "crmsync_package_syncs_skipped_total",
    "Package syncs not started, by reason (no_student_id: a booking naming no student).",
    ["reason"],
)


def profile_of(event: CloudEvent) -> ProfileData | None:
    """The profile a login or a booking event is about; None for a booking that names
    no student (the app's profile id is the student id)."""
    if event.type == LOGIN:
        login = event.data_as(LoginEvent)
        return ProfileData(
            login.profile_id,
            email=login.email,
            phone=login.phone,
            first_name=login.first_name,
            last_name=login.last_name,
            last_login_at=login.occurred_at,
        )
    if event.type.startswith("app.booking."):
        contact = event.data_as(BookingEvent).booking.contact
        if contact.student_id is None:
            return None
        return ProfileData(
            contact.student_id, email=contact.email, first_name=contact.first_name,
            last_name=contact.last_name,
        )  # fmt: skip
    raise InvalidEventError(f"{LOGINS.name} cannot handle {event.type}")


async def handle_login(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Sync the profile's packages; idempotent by event id."""
    profile = profile_of(event)
    if profile is None:
        SYNCS_SKIPPED.labels("no_student_id").inc()
        log.info("packages.booking_without_student_id")
        return
    if await already_processed(deps.pool, LOGINS.name, event.id):
        return

    async def claim(conn: asyncpg.Connection, _: ProfileSyncResult) -> None:
        await claim_message(conn, LOGINS.name, event.id)

    result = await sync_profile(deps.pool, deps.crm, profile, now=datetime.now(UTC), on_write=claim)
    _log(result)


async def packages_payload(conn: asyncpg.Connection, result: ProfileSyncResult) -> dict[str, Any]:
    """The answer to a refresh: the profile's current packages and how it is mapped."""
    rows = await conn.fetch(
        """
        SELECT crm_package_id, package_type, name, purchased_at, expires_at, unit,
               total, used, remaining, status
        FROM packages WHERE profile_id = $1 AND removed_at IS NULL ORDER BY expires_at NULLS LAST
        """,
        result.profile_id,
    )
    return {
        "profileId": result.profile_id,
        "matched": not result.unmatched,
        "method": result.method,
        "unmatchedReason": result.unmatched_reason,
        "packages": [
            {
                "id": r["crm_package_id"],
                "type": r["package_type"],
                "name": r["name"],
                "purchasedAt": r["purchased_at"].isoformat() if r["purchased_at"] else None,
                "expiresAt": r["expires_at"].isoformat() if r["expires_at"] else None,
                "unit": r["unit"],
                "total": float(r["total"]) if r["total"] is not None else None,
                "used": float(r["used"]),
                "remaining": float(r["remaining"]) if r["remaining"] is not None else None,
                "status": r["status"],
            }
            for r in rows
        ],
        "syncedAt": datetime.now(UTC).isoformat(),
    }


async def handle_refresh(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Sync now; record the outcome on the request row; answer the caller if waiting."""
    refresh = event.data_as(PackagesRefresh)
    await deps.pool.execute(
        """
        INSERT INTO package_refreshes (request_id, profile_id) VALUES ($1, $2)
        ON CONFLICT (request_id) DO NOTHING
        """,
        event.id,
        refresh.profile_id,
    )
    payload: dict[str, Any] = {}

    async def record(conn: asyncpg.Connection, result: ProfileSyncResult) -> None:
        payload.update(await packages_payload(conn, result))
        await conn.execute(
            """
            UPDATE package_refreshes SET status = 'succeeded', result = $2,
                   error = NULL, finished_at = now() WHERE request_id = $1
            """,
            event.id,
            payload,
        )

    try:
        result = await sync_profile(
            deps.pool,
            deps.crm,
            ProfileData(refresh.profile_id),
            now=datetime.now(UTC),
            create=False,
            on_write=record,
        )
    except ProfileNotFoundError as exc:
        await fail_refresh(deps.pool, event.id, str(exc))
        log.info("packages.refresh_unknown_profile", profile_id=refresh.profile_id)
        payload = {
            "error": REFRESH_PROFILE_NOT_FOUND,
            "profileId": refresh.profile_id,
            "detail": str(exc),
        }
    else:
        _log(result)
    if delivery.reply_to:
        await deps.broker.reply(delivery.reply_to, event.id, json.dumps(payload).encode())


async def fail_refresh(db: asyncpg.Pool | asyncpg.Connection, request_id: str, error: str) -> None:
    """End a refresh request ``failed`` with ``error`` (unknown profile, dead-lettered)."""
    await db.execute(
        "UPDATE package_refreshes SET status = 'failed', error = $2, finished_at = now()"
        " WHERE request_id = $1 AND status = 'running'",
        request_id,
        error[:2000],
    )


async def handle_refresh_status(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Answer with the refresh request's row (``unknown`` when there is none)."""
    query = event.data_as(RefreshStatusQuery)
    row = await deps.pool.fetchrow(
        "SELECT * FROM package_refreshes WHERE request_id = $1 AND profile_id = $2",
        query.request_id,
        query.profile_id,
    )
    answer: dict[str, Any] = {"status": "unknown", "requestId": query.request_id}
    if row is not None:
        answer = {
            "status": row["status"],
            "requestId": row["request_id"],
            "profileId": row["profile_id"],
            "requestedAt": row["requested_at"].isoformat(),
            "finishedAt": row["finished_at"].isoformat() if row["finished_at"] else None,
            "error": row["error"],
            "result": row["result"],
        }
    if delivery.reply_to:
        await deps.broker.reply(delivery.reply_to, event.id, json.dumps(answer).encode())


def _log(result: ProfileSyncResult) -> None:
    log.info(
        "packages.synced",
        profile_id=result.profile_id,
        matched=not result.unmatched,
        method=result.method,
        packages=result.packages,
        changed=result.changed,
        removed=result.removed,
    )
