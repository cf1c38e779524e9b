"""The sandbox's RepCard company: generated records, stable ids, edits that move ``updatedAt``.

RepCard publishes no payload schema (reference/repcard/NOTES.md, "Not found"); the
shapes below follow what third-party code observed (appointments carry ``setter``,
``closer``, ``contact``, ``status {id, title}``, ``startAt`` as ``YYYY-MM-DD
HH:MM:SS``, ``createdAt``) and use the same camelCase for the rest. The same seed
and sizes always give the same records. Generated times lie before today (UTC), so a
record edited today is the only one in today's date window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Entity names of the control API, in the pull's (foreign-key) order.
ENTITIES = (
    "users",
    "offices",
    "customers",
    "appointments",
    "status_logs",
    "customer_attachments",
    "appointment_attachments",
)
DEFAULT_SIZES = {
    "users": 40,
    "offices": 5,
    "customers": 2000,
    "appointments": 6000,
    "status_logs": 10000,
    "customer_attachments": 2000,
    "appointment_attachments": 2000,
}
# First id of each entity: ids of different entities never collide, as in a real API.
_ID_BASE = {name: (i + 1) * 1_000_000 for i, name in enumerate(ENTITIES)}
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
_STATES = ("CA", "TX", "AZ", "NV", "FL", "UT")
_STATUSES = ((1, "New Lead"), (2, "Appointment Set"), (3, "Sold"), (4, "Not Interested"))
_DISPOSITIONS = ("Sat", "No Show", "Rescheduled", "Closed Won", "Closed Lost")
_FILE_TYPES = (("pdf", "application/pdf"), ("jpg", "image/jpeg"), ("png", "image/png"))


def stamp(when: datetime) -> str:
    """RepCard's time format, ``YYYY-MM-DD HH:MM:SS`` (UTC here)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class RepCardCompany:
    """Every record by entity and id, and the ids hidden from lists (adversarial order)."""

    seed: int = 1
    sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    records: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    hidden: dict[str, set[int]] = field(default_factory=dict)
    generated: bool = False
    # (entity, parent key) -> parent id -> visible records; cleared on every change.
    _by_parent: dict[tuple[str, str], dict[Any, list[dict[str, Any]]]] = field(default_factory=dict)

    def reset(self) -> None:
        """Back to the default company (generated again on next use)."""
        self.seed, self.sizes, self.generated = 1, dict(DEFAULT_SIZES), False
        self._by_parent.clear()

    def ensure(self) -> None:
        """Generate on first use (the sandbox starts fast for other providers' tests)."""
        if not self.generated:
            self.generate()

    def generate(self) -> None:
        rnd = random.Random(self.seed)
        anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.records = {name: {} for name in ENTITIES}
        self.hidden = {name: set() for name in ENTITIES}
        self.generated = True
        self._by_parent.clear()

        def times() -> dict[str, str]:
            created = anchor - timedelta(days=rnd.randint(2, 365), seconds=rnd.randint(0, 86399))
            updated = min(
                created + timedelta(days=rnd.randint(0, 30)), anchor - timedelta(seconds=1)
            )
            return {"createdAt": stamp(created), "updatedAt": stamp(updated)}

        def ids(name: str) -> range:
            return range(_ID_BASE[name] + 1, _ID_BASE[name] + 1 + self.sizes.get(name, 0))

        def pick(name: str) -> int | None:
            n = self.sizes.get(name, 0)
            return _ID_BASE[name] + rnd.randint(1, n) if n else None

        def person(i: int) -> dict[str, Any]:
            first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
            return {
                "firstName": first,
                "lastName": last,
                "email": f"{first}.{last}.{i}@example.test".lower(),
                "phoneNumber": f"555{rnd.randint(1000000, 9999999)}",
            }

        for i in ids("offices"):
            self.records["offices"][i] = {
                "id": i, "name": f"Office {i % 1000}", "address": f"{i % 997} Main St",
                "city": "Springfield", "state": rnd.choice(_STATES), **times(),
            }  # fmt: skip
        for i in ids("users"):
            office = pick("offices")
            self.records["users"][i] = {
                "id": i, **person(i), "jobTitle": rnd.choice(("Setter", "Closer", "Manager")),
                "role": rnd.choice(("Rep", "Admin")), "status": "active", "companyId": 1,
                "officeId": office, "officeName": f"Office {(office or 0) % 1000}", **times(),
            }  # fmt: skip
        for i in ids("customers"):
            sid, title = rnd.choice(_STATUSES)
            self.records["customers"][i] = {
                "id": i, **person(i), "address": f"{i % 9973} Solar Way", "city": "Phoenix",
                "state": rnd.choice(_STATES), "zip": f"{rnd.randint(10000, 99999)}",
                "status": {"id": sid, "title": title}, "userId": pick("users"),
                "officeId": pick("offices"), **times(),
            }  # fmt: skip
        for i in ids("appointments"):
            start = anchor + timedelta(days=rnd.randint(-200, 30), hours=rnd.randint(8, 18))
            sid, title = rnd.choice(_STATUSES)
            self.records["appointments"][i] = {
                "id": i, "title": "Solar consultation",
                "contact": {"id": pick("customers")}, "setter": {"id": pick("users")},
                "closer": {"id": pick("users")}, "status": {"id": sid, "title": title},
                "disposition": rnd.choice(_DISPOSITIONS), "startAt": stamp(start),
                "endAt": stamp(start + timedelta(hours=1)), **times(),
            }  # fmt: skip
        for i in ids("status_logs"):
            (sid, title), (_, before) = rnd.choice(_STATUSES), rnd.choice(_STATUSES)
            self.records["status_logs"][i] = {
                "id": i, "customerId": pick("customers"), "userId": pick("users"),
                "statusId": sid, "status": title, "previousStatus": before, **times(),
            }  # fmt: skip
        for kind, parent, key in (
            ("customer_attachments", "customers", "customerId"),
            ("appointment_attachments", "appointments", "appointmentId"),
        ):
            for i in ids(kind):
                ext, mime = rnd.choice(_FILE_TYPES)
                self.records[kind][i] = {
                    "id": i, key: pick(parent), "fileName": f"doc-{i}.{ext}", "fileType": mime,
                    "url": f"https://files.example.test/{kind}/{i}.{ext}", **times(),
                }  # fmt: skip

    def visible(self, entity: str) -> list[dict[str, Any]]:
        """The entity's records a list answers with, by id."""
        self.ensure()
        hidden = self.hidden[entity]
        return [r for i, r in sorted(self.records[entity].items()) if i not in hidden]

    def of_parent(self, entity: str, key: str, parent_id: int | None) -> list[dict[str, Any]]:
        """The visible records of ``entity`` whose ``key`` is ``parent_id``, by id."""
        self.ensure()
        index = self._by_parent.get((entity, key))
        if index is None:
            index = {}
            for record in self.visible(entity):
                index.setdefault(record.get(key), []).append(record)
            self._by_parent[(entity, key)] = index
        return index.get(parent_id, [])

    def changed(self) -> None:
        """Forget the indexes (records or hidden ids changed)."""
        self._by_parent.clear()

    def edit(self, entity: str, record_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``changes`` into a record and move its ``updatedAt`` to now."""
        self.ensure()
        record = self.records[entity].get(record_id)
        if record is None:
            return None
        record.update({k: v for k, v in changes.items() if k != "id"})
        record["updatedAt"] = stamp(datetime.now(UTC))
        self.changed()
        return record

    def add(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        """A new record with the next id, created and updated now."""
        self.ensure()
        table = self.records[entity]
        new_id = max(table, default=_ID_BASE[entity]) + 1
        now = stamp(datetime.now(UTC))
        table[new_id] = {**values, "id": new_id, "createdAt": now, "updatedAt": now}
        self.changed()
        return table[new_id]
