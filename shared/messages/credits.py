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

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from shared.messages.types import (
    INT4_MAX,
    AsciiKey,
    BigInt,
    Day,
    EventTime,
    Identifier,
    Int4,
    Text,
)

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
    """``"Clinical Skills Token"`` (any ASCII case) or ``"cs_credits"`` → ``"cs_credits"``.

    Raises:
        ValueError: an unknown name (pydantic reports it with the field path).
    """
    if name in CREDIT_FIELDS:
        return name
    field = TOKEN_NAMES.get(name.lower()) if name.isascii() else None
    if field is None:
        raise ValueError(f"unknown credit type {name!r}; use one of {', '.join(CREDIT_FIELDS)}")
    return field


def _any_case(text: str) -> str:
    """A regular expression matching ``text`` in any ASCII case (JSON Schema has no flags)."""
    assert all(c.isalpha() or c in " -" for c in text), text  # nothing to escape
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


# The credit names a notification may use, as a JSON Schema pattern (``propertyNames``).
CREDIT_NAME_PATTERN = (
    "^(" + "|".join([*CREDIT_FIELDS, *(_any_case(name) for name in TOKEN_NAMES)]) + ")$"
)


Credits = Annotated[
    # Keys are mapped to credit fields as they are validated (CREDIT_NAME_PATTERN's names).
    dict[Annotated[str, AfterValidator(credit_field)], Int4],
    Field(min_length=1),
    WithJsonSchema(
        {
            "type": "object",
            "description": "New absolute balances by credit type (or the app's token name).",
            "minProperties": 1,
            "propertyNames": {"pattern": CREDIT_NAME_PATTERN},
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": INT4_MAX},
        }
    ),
]


def _non_null(names: tuple[str, ...], schema: dict[str, Any]) -> dict[str, Any]:
    """``{"required": names}`` with each of them present and not null."""
    kinds = {"contact": "object", "credits": "object", "version": "integer", "items": "array"}
    return {
        "required": list(names),
        "properties": {name: {"type": kinds[name]} for name in names},
        **schema,
    }


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


_KEYS = ("hubspotId", "studentId", "email")
# An email as intake accepts it: something@something, no spaces or control characters.
# (No ``\s``: Python, Rust and ECMA-262 disagree on which characters it names.)
EMAIL_PATTERN = r"^[^@ \x00-\x1f\x7f]+@[^@ \x00-\x1f\x7f]+$"


class ContactRef(_Model):
    """Who: at least one of the HubSpot contact id, the app's student id, the email."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": [k], "properties": {k: {"type": "string"}}} for k in _KEYS]
        }
    )

    hubspot_id: Identifier | None = Field(
        default=None, alias="hubspotId", min_length=1, max_length=100
    )
    student_id: Identifier | None = Field(
        default=None, alias="studentId", min_length=1, max_length=200
    )
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    first_name: Text | None = Field(default=None, alias="firstName", max_length=200)
    last_name: Text | None = Field(default=None, alias="lastName", max_length=200)

    @model_validator(mode="after")
    def _one_key(self) -> ContactRef:
        if not (self.hubspot_id or self.student_id or self.email):
            raise ValueError("give at least one of hubspotId, studentId, email")
        return self


class CreditChange(_Model):
    """One contact's new balances."""

    contact: ContactRef
    credits: Credits
    version: BigInt = Field(description="the app's per-contact version; higher is newer")


class CreditsNotification(_Model):
    """``POST /v1/events/credits``: one contact (top-level fields) or a batch (``items``).

    Shapes::

        {"idempotencyKey": "bk-991-deduct", "reason": "booking_created",
         "occurredAt": "2026-11-21T10:00:00Z",
         "contact": {"studentId": "st-17", "email": "ada@example.test"},
         "credits": {"sj_credits": 3}, "version": 42}

        {"idempotencyKey": "refund-2026-11-21", "reason": "bulk_refund",
         "occurredAt": "...", "items": [{"contact": {...}, "credits": {...}, "version": 43}, ...]}

    ``null`` for ``contact``, ``credits``, ``version`` or ``items`` means "not given".
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                _non_null(("contact", "credits", "version"), {"not": _non_null(("items",), {})}),
                _non_null(
                    ("items",),
                    {
                        "not": {
                            "anyOf": [
                                _non_null((name,), {}) for name in ("contact", "credits", "version")
                            ]
                        }
                    },
                ),
            ]
        }
    )

    idempotency_key: AsciiKey = Field(alias="idempotencyKey", min_length=1, max_length=200)
    reason: Reason
    occurred_at: EventTime = Field(alias="occurredAt")
    contact: ContactRef | None = None
    credits: Credits | None = None
    version: BigInt | None = None
    items: list[CreditChange] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)

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
    booking_ref: Identifier = Field(alias="bookingRef", min_length=1, max_length=200)
    contact: ContactRef
    exam_ref: Identifier = Field(alias="examRef", min_length=1, max_length=200)
    exam_name: Text | None = Field(default=None, alias="examName", max_length=500)
    exam_date: Day | None = Field(default=None, alias="examDate")
    attended: bool | None = Field(default=None, strict=True)


class BookingEvent(_Model):
    """``POST /v1/events/bookings``::

        {"idempotencyKey": "bk-991-created", "action": "created",
         "occurredAt": "2026-11-21T10:00:00Z", "version": 1,
         "booking": {"bookingRef": "bk-991", "examRef": "mx-12", "examName": "SJT mock 12",
                     "examDate": "2026-12-01", "contact": {"studentId": "st-17"}}}

    ``action``: ``created``, ``cancelled`` or ``attendance_marked`` (with
    ``booking.attended``). ``version`` is the app's per-booking version.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "required": ["action"],
                "properties": {"action": {"const": "attendance_marked"}},
            },
            "then": {
                "properties": {
                    "booking": {
                        "required": ["attended"],
                        "properties": {"attended": {"type": "boolean"}},
                    }
                }
            },
        }
    )

    idempotency_key: AsciiKey = Field(alias="idempotencyKey", min_length=1, max_length=200)
    action: Literal["created", "cancelled", "attendance_marked"]
    occurred_at: EventTime = Field(alias="occurredAt")
    version: BigInt = 0
    booking: BookingInfo

    @model_validator(mode="after")
    def _attendance(self) -> BookingEvent:
        if self.action == "attendance_marked" and self.booking.attended is None:
            raise ValueError("attendance_marked needs booking.attended")
        return self


class ContactPush(BaseModel):
    """``hubspot.contact.push``: send contact ``contactId``'s current state to HubSpot again
    (the drift check's repairs; credit changes reach HubSpot without a message)."""

    model_config = ConfigDict(populate_by_name=True)

    contact_id: int = Field(alias="contactId")
