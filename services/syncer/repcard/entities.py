"""The seven RepCard entities of the pull, in foreign-key order, and their columns.

Each :class:`Entity` says where RepCard lists it (reference/repcard/NOTES.md), whether
that list takes ``from_date`` / ``to_date``, which table it lands in, how a record's
columns are read from its JSON (``raw_data`` keeps the whole record) and which of
its columns point at a parent (``<parent>_repcard_id`` -> ``<parent>_id``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Record = dict[str, Any]


def ts(value: Any) -> str | None:
    """RepCard's ``YYYY-MM-DD HH:MM:SS`` (read as UTC) or ISO 8601, as ISO 8601; else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def ref(value: Any) -> int | None:
    """An id given as ``17``, ``"17"`` or ``{"id": 17}``; else None."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def title(value: Any) -> str | None:
    """A status given as ``"Sold"`` or ``{"id": 3, "title": "Sold"}``."""
    if isinstance(value, dict):
        value = value.get("title") or value.get("name")
    return value if isinstance(value, str) else None


def text(value: Any) -> str | None:
    return None if value is None else str(value)


def _times(r: Record) -> Record:
    return {"created_at": ts(r.get("createdAt")), "updated_at": ts(r.get("updatedAt"))}


def _file(r: Record) -> Record:
    return {
        "file_name": text(r.get("fileName") or r.get("name")),
        "file_type": text(r.get("fileType") or r.get("type")),
        "file_url": text(r.get("url") or r.get("fileUrl")),
        **_times(r),
    }


@dataclass(frozen=True)
class Link:
    """``fk`` (nullable FK) is set from ``source`` once ``parent`` has that id."""

    fk: str
    source: str
    parent: str


@dataclass(frozen=True)
class Entity:
    """One entity of the pull.

    Attributes:
        name: ``entity_type`` in ``repcard_sync_log`` (``status_logs``, ...).
        skip: the job parameter that leaves it out (``skip_status_logs``).
        table: its table.
        path: its list endpoint; None for status logs (per customer).
        dated: the list takes ``from_date`` / ``to_date``.
        columns: (column, SQL type) read by ``extract``, besides ``id`` and ``raw_data``.
        links: its foreign keys to parents.
        extract: the record's column values.
    """

    name: str
    skip: str
    table: str
    path: str | None
    dated: bool
    columns: tuple[tuple[str, str], ...]
    links: tuple[Link, ...]
    extract: Callable[[Record], Record]


_T = "text"
_TS = "timestamptz"
_ID = "bigint"

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "users", "skip_users", "repcard_users", "/users/minimal", False,
        (("first_name", _T), ("last_name", _T), ("email", _T), ("phone", _T), ("role", _T),
         ("job_title", _T), ("status", _T), ("office_name", _T), ("office_repcard_id", _ID),
         ("created_at", _TS), ("updated_at", _TS)),
        (Link("office_id", "office_repcard_id", "repcard_offices"),),
        lambda r: {
            "first_name": text(r.get("firstName")), "last_name": text(r.get("lastName")),
            "email": text(r.get("email")), "phone": text(r.get("phoneNumber") or r.get("phone")),
            "role": text(r.get("role") or r.get("roleName")), "job_title": text(r.get("jobTitle")),
            "status": title(r.get("status")),
            "office_name": text(r.get("officeName") or title(r.get("office"))),
            "office_repcard_id": ref(r.get("officeId") or r.get("office")), **_times(r),
        },
    ),
    Entity(
        "offices", "skip_offices", "repcard_offices", "/offices", False,
        (("name", _T), ("address", _T), ("city", _T), ("state", _T), ("created_at", _TS),
         ("updated_at", _TS)),
        (),
        lambda r: {
            "name": text(r.get("name")), "address": text(r.get("address")),
            "city": text(r.get("city")), "state": text(r.get("state")), **_times(r),
        },
    ),
    Entity(
        "customers", "skip_customers", "repcard_customers", "/customers", True,
        (("first_name", _T), ("last_name", _T), ("email", _T), ("phone", _T), ("address", _T),
         ("city", _T), ("state", _T), ("zip", _T), ("status", _T), ("owner_repcard_id", _ID),
         ("office_repcard_id", _ID), ("created_at", _TS), ("updated_at", _TS)),
        (Link("owner_id", "owner_repcard_id", "repcard_users"),
         Link("office_id", "office_repcard_id", "repcard_offices")),
        lambda r: {
            "first_name": text(r.get("firstName")), "last_name": text(r.get("lastName")),
            "email": text(r.get("email")), "phone": text(r.get("phoneNumber") or r.get("phone")),
            "address": text(r.get("address")), "city": text(r.get("city")),
            "state": text(r.get("state")), "zip": text(r.get("zip")),
            "status": title(r.get("status")), "owner_repcard_id": ref(r.get("userId")),
            "office_repcard_id": ref(r.get("officeId")), **_times(r),
        },
    ),
    Entity(
        "appointments", "skip_appointments", "repcard_appointments", "/appointments", True,
        (("customer_repcard_id", _ID), ("setter_repcard_id", _ID), ("closer_repcard_id", _ID),
         ("title", _T), ("status", _T), ("disposition", _T), ("scheduled_at", _TS),
         ("ends_at", _TS), ("created_at", _TS), ("updated_at", _TS)),
        (Link("customer_id", "customer_repcard_id", "repcard_customers"),
         Link("setter_id", "setter_repcard_id", "repcard_users"),
         Link("closer_id", "closer_repcard_id", "repcard_users")),
        lambda r: {
            "customer_repcard_id": ref(r.get("contact") or r.get("customerId")),
            "setter_repcard_id": ref(r.get("setter")), "closer_repcard_id": ref(r.get("closer")),
            "title": text(r.get("title")), "status": title(r.get("status")),
            "disposition": title(r.get("disposition")), "scheduled_at": ts(r.get("startAt")),
            "ends_at": ts(r.get("endAt")), **_times(r),
        },
    ),
    Entity(
        "status_logs", "skip_status_logs", "repcard_status_logs", None, True,
        (("customer_repcard_id", _ID), ("user_repcard_id", _ID), ("status_id", _ID),
         ("status", _T), ("previous_status", _T), ("created_at", _TS), ("updated_at", _TS)),
        (Link("customer_id", "customer_repcard_id", "repcard_customers"),
         Link("user_id", "user_repcard_id", "repcard_users")),
        lambda r: {
            "customer_repcard_id": ref(r.get("customerId")),
            "user_repcard_id": ref(r.get("userId")),
            "status_id": ref(r.get("statusId")), "status": title(r.get("status")),
            "previous_status": title(r.get("previousStatus")), **_times(r),
        },
    ),
    Entity(
        "customer_attachments", "skip_customer_attachments", "repcard_customer_attachments",
        "/customers/attachments", True,
        (("customer_repcard_id", _ID), ("file_name", _T), ("file_type", _T), ("file_url", _T),
         ("created_at", _TS), ("updated_at", _TS)),
        (Link("customer_id", "customer_repcard_id", "repcard_customers"),),
        lambda r: {"customer_repcard_id": ref(r.get("customerId")), **_file(r)},
    ),
    Entity(
        "appointment_attachments", "skip_appointment_attachments",
        "repcard_appointment_attachments", "/appointments/attachments", True,
        (("appointment_repcard_id", _ID), ("file_name", _T), ("file_type", _T), ("file_url", _T),
         ("created_at", _TS), ("updated_at", _TS)),
        (Link("appointment_id", "appointment_repcard_id", "repcard_appointments"),),
        lambda r: {"appointment_repcard_id": ref(r.get("appointmentId")), **_file(r)},
    ),
)  # fmt: skip

BY_NAME = {entity.name: entity for entity in ENTITIES}
ENTITY_NAMES = tuple(entity.name for entity in ENTITIES)
