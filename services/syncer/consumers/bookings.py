"""``syncer.bookings``: booking created / cancelled / attendance marked.

Upserts the mock exam (by ``examRef``) and the booking (by ``bookingRef``, guarded by
the app's per-booking version), recounts the exam's ``total_bookings`` from the
bookings themselves (so it is right however events interleave or repeat), and writes
the audit log. HubSpot gets all of it from the batch sync.
"""

from __future__ import annotations

import asyncpg
import structlog

from services.syncer.contacts import resolve_contact
from services.syncer.deps import SyncerDeps
from shared.consumer import Delivery
from shared.db import claim_message
from shared.events import CloudEvent
from shared.messages.credits import BookingEvent
from shared.queues import BOOKINGS

log = structlog.get_logger(__name__)


async def upsert_mock_exam(conn: asyncpg.Connection, booking: BookingEvent) -> int:
    info = booking.booking
    exam_id: int = await conn.fetchval(
        """
        INSERT INTO mock_exams (exam_ref, name, exam_date) VALUES ($1, $2, $3)
        ON CONFLICT (exam_ref) DO UPDATE SET
            name = COALESCE(EXCLUDED.name, mock_exams.name),
            exam_date = COALESCE(EXCLUDED.exam_date, mock_exams.exam_date),
            change_version = mock_exams.change_version
                + (EXCLUDED.name IS DISTINCT FROM mock_exams.name AND EXCLUDED.name IS NOT NULL
                   OR EXCLUDED.exam_date IS DISTINCT FROM mock_exams.exam_date
                      AND EXCLUDED.exam_date IS NOT NULL)::int,
            updated_at = now()
        RETURNING id
        """,
        info.exam_ref,
        info.exam_name,
        info.exam_date,
    )
    return exam_id


async def upsert_booking(
    conn: asyncpg.Connection, booking: BookingEvent, contact_id: int, exam_id: int
) -> asyncpg.Record | None:
    """Insert or update the booking; None when the event is older than what we have."""
    status = "cancelled" if booking.action == "cancelled" else "confirmed"
    attended = booking.booking.attended if booking.action == "attendance_marked" else None
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        INSERT INTO bookings (booking_ref, contact_id, mock_exam_id, status, attended, version,
                              occurred_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (booking_ref) DO UPDATE SET
            status = CASE WHEN $8 THEN bookings.status ELSE EXCLUDED.status END,
            attended = COALESCE(EXCLUDED.attended, bookings.attended),
            mock_exam_id = EXCLUDED.mock_exam_id,
            version = EXCLUDED.version, occurred_at = EXCLUDED.occurred_at,
            change_version = bookings.change_version + 1, updated_at = now()
        WHERE (EXCLUDED.version, EXCLUDED.occurred_at) > (bookings.version, bookings.occurred_at)
        RETURNING id, change_version, status
        """,
        booking.booking.booking_ref,
        contact_id,
        exam_id,
        status,
        attended,
        booking.version,
        booking.occurred_at,
        booking.action == "attendance_marked",  # marking attendance keeps the status
    )
    return row


async def recount_bookings(conn: asyncpg.Connection, exam_ids: set[int]) -> None:
    """Set ``total_bookings`` of these exams to their count of confirmed bookings."""
    await conn.execute(
        """
        UPDATE mock_exams m SET total_bookings = c.n,
               change_version = m.change_version + 1, updated_at = now()
        FROM (SELECT m2.id, count(b.id) AS n FROM mock_exams m2
              LEFT JOIN bookings b ON b.mock_exam_id = m2.id AND b.status = 'confirmed'
              WHERE m2.id = ANY($1::bigint[]) GROUP BY m2.id) c
        WHERE m.id = c.id AND m.total_bookings <> c.n
        """,
        list(exam_ids),
    )


async def handle_booking(event: CloudEvent, delivery: Delivery, deps: SyncerDeps) -> None:
    """Apply one booking event; idempotent by event id and by the booking's version."""
    booking = event.data_as(BookingEvent)
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, BOOKINGS.name, event.id):
            return
        contact_id = await resolve_contact(conn, booking.booking.contact)
        exam_id = await upsert_mock_exam(conn, booking)
        previous_exam = await conn.fetchval(
            "SELECT mock_exam_id FROM bookings WHERE booking_ref = $1 FOR UPDATE",
            booking.booking.booking_ref,
        )
        row = await upsert_booking(conn, booking, contact_id, exam_id)
        if row is None:
            log.info("booking.stale_ignored", booking_ref=booking.booking.booking_ref)
            return
        await recount_bookings(conn, {exam_id} | ({previous_exam} if previous_exam else set()))
        await conn.execute(
            """
            INSERT INTO audit_log (entity, entity_id, action, entity_version, details, event_id)
            VALUES ('booking', $1, $2, $3, $4, $5)
            """,
            row["id"],
            f"booking_{booking.action}",
            row["change_version"],
            {"bookingRef": booking.booking.booking_ref, "status": row["status"]},
            event.id,
        )
    log.info("booking.applied", booking_ref=booking.booking.booking_ref, action=booking.action)
