"""Field types for what comes in from outside, so bad input is refused at intake.

Each type validates exactly what its JSON Schema (in the OpenAPI documents) says, so
a body the schema allows is accepted and one it forbids is refused (422 with the
field's JSON Pointer); nothing that passes can fail later in the syncer:

- text never holds NUL (Postgres ``text`` and ``jsonb`` refuse ``\\u0000``);
  identifiers hold no control character at all (they travel in AMQP headers and logs);
- integers are JSON integers (``2`` or ``2.0``; no ``"2"``, ``true`` or ``1.5``) that fit the column
  they go to (``bigint``: 2^63 - 1, ``integer``: 2^31 - 1);
- times are RFC 3339 date-times with an offset, in the years 1970 to 2099: a time
  before the Unix epoch cannot be an AMQP ``timestamp`` (unsigned), and one far in
  the future would win every "newer than" comparison for ever.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

# Largest values of Postgres ``bigint`` and ``integer``.
BIGINT_MAX = 2**63 - 1
INT4_MAX = 2**31 - 1
# Years an event time or a date may have (inclusive).
MIN_YEAR = 1970
MAX_YEAR = 2099

# Regular expressions in the subset ECMA-262 (JSON Schema), Python and Rust agree on.
NO_NUL = r"^[^\x00]*$"
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
# Visible ASCII and space: ids that end up in AMQP short strings (255 bytes at most).
PRINTABLE_ASCII = r"^[\x20-\x7e]*$"
_YEAR = "(19[7-9][0-9]|20[0-9]{2})"
DATE_TIME_PATTERN = (
    rf"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
DATE_PATTERN = rf"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}$"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Text = Annotated[str, Field(pattern=NO_NUL)]
"""Free text (a name): anything but NUL."""

Identifier = Annotated[str, Field(pattern=NO_CONTROL)]
"""An id or key: no control characters."""

AsciiKey = Annotated[str, Field(pattern=PRINTABLE_ASCII)]
"""A key that becomes part of an event id: printable ASCII."""


def json_integer(value: Any) -> Any:
    # JSON Schema's "integer" is any number with a zero fraction (2.0 and 2e3 too), and
    # nothing else: not "2", not true.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"an integer is required, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"an integer is required, got {value!r}")
        return int(value)
    return value


BigInt = Annotated[int, Field(ge=0, le=BIGINT_MAX), BeforeValidator(json_integer)]
"""A non-negative JSON integer that fits ``bigint`` (versions)."""

SignedBigInt = Annotated[int, Field(ge=-BIGINT_MAX, le=BIGINT_MAX), BeforeValidator(json_integer)]
"""A JSON integer that fits ``bigint`` (amounts in minor units, which refunds make negative)."""

Int4 = Annotated[int, Field(ge=0, le=INT4_MAX), BeforeValidator(json_integer)]
"""A non-negative JSON integer that fits ``integer`` (balances)."""


def _match(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, date):  # built in Python, not read from JSON
            return value
        if not isinstance(value, str) or compiled.fullmatch(value) is None:
            raise ValueError(f"{what} from {MIN_YEAR} to {MAX_YEAR} is required, got {value!r}")
        return value

    return check


def _in_years(value: datetime | date) -> datetime | date:
    # The pattern checked the written year; this catches a value given as a Python object.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"the year must be from {MIN_YEAR} to {MAX_YEAR}")
    return value


EventTime = Annotated[
    AwareDatetime,
    BeforeValidator(_match(DATE_TIME_PATTERN, "an RFC 3339 date-time with an offset")),
    AfterValidator(_in_years),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN}),
]
"""When something happened: ``2026-11-21T10:00:00Z`` (an offset is required)."""

Day = Annotated[
    date,
    BeforeValidator(_match(DATE_PATTERN, "a date YYYY-MM-DD")),
    AfterValidator(_in_years),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
"""A calendar date, ``2026-12-01``."""


# A decimal amount as providers write it ("598.94"): at most 12 integer digits, so its
# minor units fit ``bigint`` whatever the currency's exponent.
MONEY_PATTERN = r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"
_MONEY = re.compile(MONEY_PATTERN)


def _money(value: Any) -> Any:
    if isinstance(value, Decimal):  # built in Python, not read from JSON
        return value
    if not isinstance(value, str) or _MONEY.fullmatch(value) is None:
        raise ValueError(f'a decimal string like "598.94" is required, got {value!r}')
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN}),
]
"""A money amount as a decimal string, in the currency's major unit."""


def utc_event_time(value: datetime) -> datetime:
    """``value`` as an envelope time: never before the Unix epoch.

    An :data:`EventTime` written in 1970 with a positive offset
    (``1970-01-01T00:30:00+01:00``) is still before the epoch in UTC; the AMQP
    ``timestamp`` property is unsigned, so the envelope takes the epoch instead.
    The event's data keeps the time as sent.
    """
    return max(value.astimezone(UTC), _EPOCH)
