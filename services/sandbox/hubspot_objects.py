"""The sandbox's HubSpot records, unique properties, injected failures and associations.

Pure state, no HTTP: :mod:`services.sandbox.hubspot` turns it into HubSpot's answers.

- Object types (API.md §4): ``contacts`` is ``0-1`` (also ``companies`` ``0-2``,
  ``deals`` ``0-3``); custom types are ``2-<n>`` or ``p<portal>_<name>``. Records are kept
  under the type id, so ``contacts`` and ``0-1`` address the same records.
- Record ids are strings from one counter for all types (``"90101"``, ...), so an id
  alone finds its record and type (used for v3 create-with-associations).
- Unique properties (API.md §3.4, §6.1 ``hasUniqueValue``): ``email`` for contacts and
  whatever the control API registers per type; a second record with the same value is
  refused (CONFLICT). Emails are stored in lower case and compared without case.
- Injected failures: a :class:`FailRule` makes inputs whose (resulting) properties match
  fail with the rule's category: each such input on its own (a 207 entry), or, with
  ``whole_batch``, the whole batch call (400, nothing applied), as HubSpot answers a
  batch it cannot apply partly (upserts by email, API.md §3.4; creates without
  ``objectWriteTraceId``, §3.2; §7 rule 6).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STANDARD_TYPES = {
    "contacts": "0-1", "contact": "0-1", "0-1": "0-1",
    "companies": "0-2", "company": "0-2", "0-2": "0-2",
    "deals": "0-3", "deal": "0-3", "0-3": "0-3",
}  # fmt: skip
_LABELS = {"0-1": "Contact", "0-2": "Company", "0-3": "Deal"}
_CUSTOM_TYPE = re.compile(r"^(2-\d+|p\d+_[a-z0-9_]+)$", re.IGNORECASE)
# The first record id is 90101, as in API.md's examples.
FIRST_ID = 90101
# HubSpot picks a default type id per object pair (API.md §5.1: spec silent); ours.
DEFAULT_ASSOCIATION_TYPE_ID = 1
# Association types the default endpoint stores.
DEFAULT_TYPE = ("HUBSPOT_DEFINED", DEFAULT_ASSOCIATION_TYPE_ID)


def type_id_of(object_type: str) -> str | None:
    """``contacts`` -> ``0-1``, ``2-1001`` -> ``2-1001``; None for what HubSpot would not know."""
    known = STANDARD_TYPES.get(object_type.lower())
    if known is not None:
        return known
    return object_type if _CUSTOM_TYPE.match(object_type) else None


def label_of(type_id: str) -> str:
    """``Contact`` for ``0-1``; custom objects are ``object``."""
    return _LABELS.get(type_id, "object")


def iso_now() -> str:
    """``2025-01-05T10:00:00.123Z``, the form of HubSpot's timestamps (API.md §1)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def date_names(type_id: str) -> tuple[str, str]:
    """The created / modified date properties: contacts name them without ``hs_``."""
    if type_id == "0-1":
        return "createdate", "lastmodifieddate"
    return "hs_createdate", "hs_lastmodifieddate"


def read_only(type_id: str) -> set[str]:
    """Properties HubSpot sets itself."""
    return {"hs_object_id", *date_names(type_id)}


def normalized(prop: str, value: str) -> str:
    """How a unique or matched value compares: emails without case or blanks."""
    return value.strip().lower() if prop == "email" else value


@dataclass
class Failure:
    """Why one input failed: a ``StandardError`` category and message (API.md §2.3), and
    the ids it concerns beyond the input's own."""

    category: str
    message: str
    ids: list[str] = field(default_factory=list)


@dataclass
class Record:
    """A CRM record (``SimplePublicObject``, API.md §2.1); properties hold values only."""

    id: str
    type_id: str
    properties: dict[str, str]
    created_at: str = field(default_factory=iso_now)
    updated_at: str = ""

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at
        created, modified = self.date_names()
        self.properties.update(
            {"hs_object_id": self.id, created: self.created_at, modified: self.updated_at}
        )

    def date_names(self) -> tuple[str, str]:
        return date_names(self.type_id)

    def read_only(self) -> set[str]:
        return read_only(self.type_id)

    def touch(self) -> None:
        self.updated_at = iso_now()
        self.properties[self.date_names()[1]] = self.updated_at

    def to_json(self, names: list[str] | None = None) -> dict[str, Any]:
        """The record; with ``names``, only those properties (null when unset, as HubSpot
        answers reads [unverified]) plus the id and date properties."""
        if names is None:
            properties: dict[str, str | None] = dict(self.properties)
        else:
            wanted = [*names, *sorted(self.read_only())]
            properties = {name: self.properties.get(name) for name in dict.fromkeys(wanted)}
        return {
            "id": self.id,
            "properties": properties,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": False,
        }


@dataclass
class FailRule:
    """Inputs of ``type_id`` whose ``property`` is one of ``values`` fail (control API)."""

    type_id: str
    property: str
    values: set[str]
    category: str
    message: str
    remaining: int | None
    # True: a matching input fails the whole batch call (400), not just itself.
    whole_batch: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    hits: int = 0

    def matches(self, type_id: str, properties: Mapping[str, str]) -> bool:
        if type_id != self.type_id or self.remaining == 0:
            return False
        value = properties.get(self.property)
        return value is not None and normalized(self.property, value) in self.values

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "objectType": self.type_id,
            "match": {"property": self.property, "values": sorted(self.values)},
            "category": self.category,
            "message": self.message,
            "count": self.remaining,
            "wholeBatch": self.whole_batch,
            "hits": self.hits,
        }


# (from type, from id, to type, to id) -> {(associationCategory, associationTypeId)}
Edges = dict[tuple[str, str, str, str], set[tuple[str, int]]]


@dataclass
class HubSpotStore:
    """Records by type id and id, unique properties by type id, rules, associations."""

    default_unique: dict[str, set[str]]
    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    unique: dict[str, set[str]] = field(default_factory=dict)
    rules: list[FailRule] = field(default_factory=list)
    edges: Edges = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(FIRST_ID))
    # (type id, property) -> normalized value -> record ids; built on first lookup, so
    # upserts stay fast at 100,000 records as HubSpot's own lookups are.
    _index: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records.clear()
        self.rules.clear()
        self.edges.clear()
        self.unique = {type_id: set(names) for type_id, names in self.default_unique.items()}
        self._ids = itertools.count(FIRST_ID)
        self._index.clear()

    def of_type(self, type_id: str) -> dict[str, Record]:
        return self.records.setdefault(type_id, {})

    def find(self, type_id: str, record_id: str) -> Record | None:
        return self.of_type(type_id).get(record_id)

    def find_by(self, type_id: str, prop: str, value: str) -> Record | None:
        """The record whose ``prop`` equals ``value`` (``hs_object_id``: by id)."""
        if prop == "hs_object_id":
            return self.find(type_id, value)
        records = self.of_type(type_id)
        ids = self._indexed(type_id, prop).get(normalized(prop, value), set())
        # The first match in creation order, as a scan would find it.
        return min((records[i] for i in ids if i in records), key=lambda r: int(r.id), default=None)

    def _indexed(self, type_id: str, prop: str) -> dict[str, set[str]]:
        built = self._index.get((type_id, prop))
        if built is None:
            built = {}
            for record in self.of_type(type_id).values():
                if (value := record.properties.get(prop)) is not None:
                    built.setdefault(normalized(prop, value), set()).add(record.id)
            self._index[(type_id, prop)] = built
        return built

    def _reindex(self, record: Record, *, add: bool) -> None:
        for (type_id, prop), values in self._index.items():
            value = record.properties.get(prop)
            if type_id != record.type_id or value is None:
                continue
            if add:
                values.setdefault(normalized(prop, value), set()).add(record.id)
            else:
                values.get(normalized(prop, value), set()).discard(record.id)

    def locate(self, record_id: str) -> Record | None:
        """A record of any type by id (ids are unique across types here)."""
        return next((r[record_id] for r in self.records.values() if record_id in r), None)

    def injected(self, type_id: str, properties: Mapping[str, str]) -> Failure | None:
        """The first live rule matching these properties, counted as hit."""
        for rule in self.rules:
            if rule.matches(type_id, properties):
                rule.hits += 1
                rule.remaining = None if rule.remaining is None else rule.remaining - 1
                return Failure(rule.category, rule.message)
        return None

    def batch_refusal(
        self, type_id: str, writes: Sequence[tuple[Record | None, Mapping[str, str]]]
    ) -> Failure | None:
        """Why a whole batch of ``(record or None for a new one, changes)`` writes is
        refused (a live ``whole_batch`` rule matching one of them, counted as hit), or
        None. The failure's ids name the record or the unique value it concerns."""
        for record, changes in writes:
            merged = {**(record.properties if record else {}), **_stored(type_id, changes)}
            for rule in self.rules:
                if rule.whole_batch and rule.matches(type_id, merged):
                    rule.hits += 1
                    rule.remaining = None if rule.remaining is None else rule.remaining - 1
                    value = merged.get(rule.property, "")
                    return Failure(rule.category, f"{rule.message}: {value}", [value])
        return None

    def check(
        self, type_id: str, changes: Mapping[str, str], record: Record | None = None
    ) -> Failure | None:
        """Why ``changes`` (on ``record``, or a new one) would fail, or None."""
        merged = {**(record.properties if record else {}), **changes}
        if (failure := self.injected(type_id, merged)) is not None:
            return failure
        fixed = sorted(read_only(type_id) & {*changes})
        if fixed:
            return Failure(
                "VALIDATION_ERROR", f"Property values were not valid: {fixed} are read-only"
            )
        for prop in sorted(self.unique.get(type_id, set()) & {*changes}):
            other = self.find_by(type_id, prop, changes[prop]) if changes[prop] else None
            if other is not None and other is not record:
                return Failure(
                    "CONFLICT", f"{label_of(type_id)} already exists. Existing ID: {other.id}"
                )
        return None

    def create(self, type_id: str, properties: Mapping[str, str]) -> Record | Failure:
        values = _stored(type_id, properties)
        failure = self.check(type_id, values)
        if failure is not None:
            return failure
        record = Record(str(next(self._ids)), type_id, dict(values))
        self.of_type(type_id)[record.id] = record
        self._reindex(record, add=True)
        return record

    def update(self, record: Record, properties: Mapping[str, str]) -> Record | Failure:
        values = _stored(record.type_id, properties)
        failure = self.check(record.type_id, values, record)
        if failure is not None:
            return failure
        self._reindex(record, add=False)
        for name, value in values.items():
            if value == "":
                record.properties.pop(name, None)  # "" clears the value (API.md §3.3)
            else:
                record.properties[name] = value
        self._reindex(record, add=True)
        record.touch()
        return record

    def delete(self, record: Record) -> None:
        """Forget ``record`` and its associations."""
        self._reindex(record, add=False)
        self.of_type(record.type_id).pop(record.id, None)
        ends = {(record.type_id, record.id)}
        for edge in [e for e in self.edges if {e[:2], e[2:]} & ends]:
            del self.edges[edge]

    def associate(
        self, from_type: str, from_id: str, to_type: str, to_id: str, kinds: set[tuple[str, int]]
    ) -> Failure | None:
        """Store the pair; an existing pair keeps its types and gains these (idempotent)."""
        missing = [i for t, i in ((from_type, from_id), (to_type, to_id)) if not self.find(t, i)]
        if missing:
            return Failure("OBJECT_NOT_FOUND", f"No records found with ids {missing}", missing)
        self.edges.setdefault((from_type, from_id, to_type, to_id), set()).update(kinds)
        return None

    def pairs(self, from_type: str, to_type: str) -> dict[tuple[str, str], set[tuple[str, int]]]:
        """Associated ``(from id, to id)`` pairs in either stored direction."""
        found: dict[tuple[str, str], set[tuple[str, int]]] = {}
        for (ft, fi, tt, ti), kinds in self.edges.items():
            if (ft, tt) == (from_type, to_type):
                found.setdefault((fi, ti), set()).update(kinds)
            elif (ft, tt) == (to_type, from_type):
                found.setdefault((ti, fi), set()).update(kinds)
        return found


def _stored(type_id: str, properties: Mapping[str, str]) -> dict[str, str]:
    # HubSpot keeps contact emails in lower case.
    values = dict(properties)
    if type_id == "0-1" and values.get("email"):
        values["email"] = values["email"].strip().lower()
    return values
