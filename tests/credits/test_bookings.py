"""Booking events: bookings upserted, mock exam totals right, audit log written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import eventually, intake_settings

KEY = "test-booking-api-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def app_intake(make_intake, namespace) -> str:
    return await make_intake(intake_settings(namespace, api_keys={"booking-api": KEY}))


def booking(ref: str, action: str = "created", version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": f"{ref}-{action}-{version}",
        "action": action,
        "occurredAt": f"2026-11-21T10:00:0{version}Z",
        "version": version,
        "booking": {
            "bookingRef": ref,
            "examRef": "mx-12",
            "examName": "SJT mock 12",
            "examDate": "2026-12-01",
            "contact": {"studentId": f"st-{ref}"},
            **extra,
        },
    }


async def post(http, url: str, body: Any) -> int:
    async with http.post(f"{url}/v1/events/bookings", json=body, headers=AUTH) as resp:
        return resp.status


async def processed(db, n: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT count(*) = $1 FROM processed_messages WHERE consumer = 'syncer.bookings'", n
        )
    )


async def test_bookings_keep_the_mock_exam_total_right(http, app_intake, syncer, db) -> None:
    for ref in ("b1", "b2", "b3"):
        assert await post(http, app_intake, booking(ref)) == 202
    await eventually(lambda: processed(db, 3))
    assert await db.fetchval("SELECT total_bookings FROM mock_exams") == 3
    assert await post(http, app_intake, booking("b2", "cancelled", version=2)) == 202
    await eventually(lambda: processed(db, 4))
    assert await db.fetchval("SELECT total_bookings FROM mock_exams") == 2
    assert await db.fetchval("SELECT status FROM bookings WHERE booking_ref = 'b2'") == "cancelled"
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["booking_created"] * 3 + ["booking_cancelled"]


async def test_the_same_booking_event_twice_counts_once(http, app_intake, syncer, db) -> None:
    for _ in range(2):
        assert await post(http, app_intake, booking("b1")) == 202
    await eventually(lambda: processed(db, 1))
    assert await db.fetchval("SELECT count(*) FROM bookings") == 1
    assert await db.fetchval("SELECT total_bookings FROM mock_exams") == 1


async def test_a_late_created_event_does_not_undo_a_cancellation(
    http, app_intake, syncer, db
) -> None:
    assert await post(http, app_intake, booking("b1", "cancelled", version=2)) == 202
    await eventually(lambda: processed(db, 1))
    assert await post(http, app_intake, booking("b1", "created", version=1)) == 202
    await eventually(lambda: processed(db, 2))
    assert await db.fetchval("SELECT status FROM bookings") == "cancelled"
    assert await db.fetchval("SELECT total_bookings FROM mock_exams") == 0


async def test_attendance_is_recorded(http, app_intake, syncer, db) -> None:
    assert await post(http, app_intake, booking("b1")) == 202
    assert await post(http, app_intake, booking("b1", "attendance_marked", 2, attended=True)) == 202
    await eventually(lambda: processed(db, 2))
    row = await db.fetchrow("SELECT status, attended FROM bookings")
    assert (row["status"], row["attended"]) == ("confirmed", True)


async def test_attendance_without_attended_is_a_422(http, app_intake) -> None:
    async with http.post(
        f"{app_intake}/v1/events/bookings", json=booking("b1", "attendance_marked"), headers=AUTH
    ) as resp:
        assert resp.status == 422
