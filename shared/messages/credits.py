"""App backend events: credit changes (W3) and bookings (W4), as intake accepts them.

A credit notification carries the **new absolute balance** of one or more of the five
credit types, the reason, when it happened and the app's per-contact ``version``; it
never carries a delta, so applying it twice changes nothing and an older one is
recognised by its version. The app's token names are accepted and mapped:

==============================  ========================
app token name                  credit field
==============================  ========================
Situational Judgment Token      ``sj_credits``
Clinical Skills Token           ``cs_credits``
Mini-mock Token                 ``sjmini_credits``
Mock Discussion Token           ``mock_discussion_token``
Shared Token                    ``shared_mock_credits``
==============================  ========================
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CREDITS_CHANGED = "app.credits.changed"
BOOKING_EVENT_PREFIX = "app.booking."
CONTACT_PUSH = "hubspot.contact.push"

CREDIT_FIELDS = (
    "sj_credits",
    "cs_credits",
    "sjmini_credits",
    "mock_discussion_token",
    "shared_mock_credits",
)
TOKEN_NAMES = {
    "situational judgment token": "sj_credits",
    "clinical skills token": "cs_credits",
    "mini-mock token": "sjmini_credits",
    "mock discussion token": "mock_discussion_token",
    "shared token": "shared_mock_credits",
}
# Largest batch of contacts in one notification (bulk refunds).
MAX_BATCH = 1000

Reason = Literal[
    "booking_created", "booking_cancelled", "batch_cancel", "admin_refund", "bulk_refund"
]


def credit_field(name: str) -> str:
    """``"Clinical Skills Token"`` or ``"cs_credits"`` → ``"cs_credits"``.

    Raises:
        ValueError: an unknown name (pydantic reports it with the field path).
    """
    if name in CREDIT_FIELDS:
        return name
    field = TOKEN_NAMES.get(name.strip().lower())
    if field is None:
        raise ValueError(f"unknown credit type {name!r}; use one of {', '.join(CREDIT_FIELDS)}")
    return field


def map_credits(value: dict[str, int] | None) -> dict[str, int] | None:
    """Map token names to fields; refuse unknown types and negative balances."""
    if value is None:
        return None
    mapped: dict[str, int] = {}
    for name, balance in value.items():
        if balance < 0:
            raise ValueError(f"{name}: a balance cannot be negative")
        mapped[credit_field(name)] = balance
    return mapped


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class ContactRef(_Model):
    """Who: at least one of the HubSpot contact id, the app's student id, the email."""

    hubspot_id: str | None = Field(default=None, alias="hubspotId", min_length=1)
    student_id: str | None = Field(default=None, alias="studentId", min_length=1)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")

    @model_validator(mode="after")
    def _one_key(self) -> ContactRef:
        if not (self.hubspot_id or self.student_id or self.email):
            raise ValueError("give at least one of hubspotId, studentId, email")
        return self


class CreditChange(_Model):
    """One contact's new balances."""

    contact: ContactRef
    credits: dict[str, int] = Field(min_length=1)
    version: int = Field(ge=0, description="the app's per-contact version; higher is newer")

    @field_validator("credits")
    @classmethod
    def _known_types(cls, value: dict[str, int]) -> dict[str, int] | None:
        return map_credits(value)


class CreditsNotification(_Model):
    """``POST /v1/events/credits``: one contact (top-level fields) or a batch (``items``).

    Shapes::

        {"idempotencyKey": "bk-991-deduct", "reason": "booking_created",
         "occurredAt": "2026-11-21T10:00:00Z",
         "contact": {"studentId": "st-17", "email": "ada@example.test"},
         "credits": {"sj_credits": 3}, "version": 42}

        {"idempotencyKey": "refund-2026-11-21", "reason": "bulk_refund",
         "occurredAt": "...", "items": [{"contact": {...}, "credits": {...}, "version": 43}, ...]}
    """

    idempotency_key: str = Field(alias="idempotencyKey", min_length=1, max_length=200)
    reason: Reason
    occurred_at: datetime = Field(alias="occurredAt")
    contact: ContactRef | None = None
    credits: dict[str, int] | None = Field(default=None, min_length=1)
    version: int | None = Field(default=None, ge=0)
    items: list[CreditChange] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)

    @field_validator("credits")
    @classmethod
    def _known_types(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        return map_credits(value)

    @model_validator(mode="after")
    def _single_or_batch(self) -> CreditsNotification:
        single = (self.contact, self.credits, self.version)
        if self.items is not None:
            if any(v is not None for v in single):
                raise ValueError("send either items or contact/credits/version, not both")
        elif any(v is None for v in single):
            raise ValueError("contact, credits and version are required (or a batch in items)")
        return self

    def changes(self) -> list[CreditChange]:
        """Every contact's change, the single form as a batch of one."""
        if self.items is not None:
            return self.items
        assert self.contact is not None and self.credits is not None and self.version is not None
        return [CreditChange(contact=self.contact, credits=self.credits, version=self.version)]


class BookingInfo(_Model):
    booking_ref: str = Field(alias="bookingRef", min_length=1)
    contact: ContactRef
    exam_ref: str = Field(alias="examRef", min_length=1)
    exam_name: str | None = Field(default=None, alias="examName")
    exam_date: date | None = Field(default=None, alias="examDate")
    attended: bool | None = None


class BookingEvent(_Model):
    """``POST /v1/events/bookings``::

        {"idempotencyKey": "bk-991-created", "action": "created",
         "occurredAt": "2026-11-21T10:00:00Z", "version": 1,
         "booking": {"bookingRef": "bk-991", "examRef": "mx-12", "examName": "SJT mock 12",
                     "examDate": "2026-12-01", "contact": {"studentId": "st-17"}}}

    ``action``: ``created``, ``cancelled`` or ``attendance_marked`` (with
    ``booking.attended``). ``version`` is the app's per-booking version.
    """

    idempotency_key: str = Field(alias="idempotencyKey", min_length=1, max_length=200)
    action: Literal["created", "cancelled", "attendance_marked"]
    occurred_at: datetime = Field(alias="occurredAt")
    version: int = Field(default=0, ge=0)
    booking: BookingInfo

    @model_validator(mode="after")
    def _attendance(self) -> BookingEvent:
        if self.action == "attendance_marked" and self.booking.attended is None:
            raise ValueError("attendance_marked needs booking.attended")
        return self


class ContactPush(BaseModel):
    """``hubspot.contact.push``: contact ``contactId`` changed; HubSpot should follow."""

    model_config = ConfigDict(populate_by_name=True)

    contact_id: int = Field(alias="contactId")
