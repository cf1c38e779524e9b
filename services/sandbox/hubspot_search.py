"""The sandbox's CRM search: ``POST /crm/v3/objects/{objectType}/search`` (API.md §3.6).

Filters in a group are ANDed, groups ORed; no group matches everything. Operators: EQ,
NEQ, LT, LTE, GT, GTE, BETWEEN (``value``..``highValue``), IN, NOT_IN (``values``),
HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN, NOT_CONTAINS_TOKEN. Equality ignores case;
ordering compares numbers, then dates (ISO or epoch ms, as one number), else text.
Limits, answered 400 ``VALIDATION_ERROR``: ``limit`` <= 200, 5 groups, 10 filters a group,
25 in all (LIMITS.md §2), paging past 10,000 results (LIMITS.md §2 [secondary]).

``after`` is an offset; results are in record id order unless ``sorts`` says otherwise
(``[{"propertyName", "direction": "ASCENDING" | "DESCENDING"}]``, or the spec's strings,
``"name"`` / ``"-name"``). The real index lags writes (API.md §3.6); this one does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from services.sandbox.hubspot_objects import Record

MAX_LIMIT = 200
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_RESULTS = 10_000
_TOKEN = re.compile(r"\w+")

Operator = Literal[
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
    "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
]  # fmt: skip


class SearchError(ValueError):
    """A search HubSpot would answer with 400 VALIDATION_ERROR."""


class SearchFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    propertyName: StrictStr
    operator: Operator
    value: StrictStr | None = None
    highValue: StrictStr | None = None
    values: list[StrictStr] | None = None


class SearchGroup(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filters: list[SearchFilter] = Field(default_factory=list)


class SearchSort(BaseModel):
    model_config = ConfigDict(extra="ignore")

    propertyName: StrictStr
    direction: Literal["ASCENDING", "DESCENDING"] = "ASCENDING"


class SearchBody(BaseModel):
    """``PublicObjectSearchRequest`` (API.md §3.6); HubSpot's default page is 10."""

    model_config = ConfigDict(extra="ignore")

    filterGroups: list[SearchGroup] = Field(default_factory=list)
    sorts: list[SearchSort | StrictStr] = Field(default_factory=list)
    properties: list[StrictStr] = Field(default_factory=list)
    limit: int = 10
    after: StrictStr | None = None


def search(records: Iterable[Record], body: SearchBody) -> tuple[int, list[Record], str | None]:
    """``(total, page, next after)`` for ``body``.

    Raises:
        SearchError: a limit above is exceeded, or a filter lacks its value(s).
    """
    _validate(body)
    matched = [r for r in records if _matches_any(r, body.filterGroups)]
    matched.sort(key=lambda r: int(r.id) if r.id.isdigit() else 0)
    for sort in reversed([_sort_of(s) for s in body.sorts]):
        name, descending = sort
        present = [r for r in matched if r.properties.get(name) is not None]
        absent = [r for r in matched if r.properties.get(name) is None]
        present.sort(key=lambda r: _key(r.properties[name]), reverse=descending)
        matched = present + absent  # unset values last either way
    offset = int(body.after) if body.after else 0
    page = matched[offset : offset + body.limit]
    more = offset + body.limit < len(matched)
    return len(matched), page, str(offset + body.limit) if more else None


def _validate(body: SearchBody) -> None:
    if not 0 <= body.limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 0 and {MAX_LIMIT}")
    if body.after is not None and not body.after.isdigit():
        raise SearchError(f"after must be a paging cursor, got {body.after!r}")
    if int(body.after or 0) + body.limit > MAX_RESULTS:
        raise SearchError(f"Search results are limited to {MAX_RESULTS} per query")
    groups = body.filterGroups
    if len(groups) > MAX_GROUPS or sum(len(g.filters) for g in groups) > MAX_FILTERS:
        raise SearchError(f"at most {MAX_GROUPS} filterGroups and {MAX_FILTERS} filters")
    for group in groups:
        if len(group.filters) > MAX_FILTERS_PER_GROUP:
            raise SearchError(f"at most {MAX_FILTERS_PER_GROUP} filters per filterGroup")
        for f in group.filters:
            if f.operator in ("IN", "NOT_IN") and f.values is None:
                raise SearchError(f"{f.operator} on {f.propertyName} needs values")
            needs_value = f.operator not in ("IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY")
            if needs_value and f.value is None:
                raise SearchError(f"{f.operator} on {f.propertyName} needs a value")
            if f.operator == "BETWEEN" and f.highValue is None:
                raise SearchError(f"BETWEEN on {f.propertyName} needs a highValue")


def _sort_of(sort: SearchSort | str) -> tuple[str, bool]:
    if isinstance(sort, SearchSort):
        return sort.propertyName, sort.direction == "DESCENDING"
    return sort.removeprefix("-"), sort.startswith("-")


def _matches_any(record: Record, groups: list[SearchGroup]) -> bool:
    if not groups:
        return True
    return any(all(_matches(record, f) for f in group.filters) for group in groups)


def _matches(record: Record, f: SearchFilter) -> bool:
    value = record.properties.get(f.propertyName)
    op = f.operator
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return (value is not None and value != "") == (op == "HAS_PROPERTY")
    if op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN"):
        # Records without the property match the negative operators [unverified].
        positive = {"NEQ": "EQ", "NOT_IN": "IN", "NOT_CONTAINS_TOKEN": "CONTAINS_TOKEN"}[op]
        return not _matches(record, f.model_copy(update={"operator": positive}))
    if value is None:
        return False
    if op == "EQ":
        return _same(value, f.value or "")
    if op == "IN":
        return any(_same(value, wanted) for wanted in f.values or [])
    if op == "CONTAINS_TOKEN":
        token = (f.value or "").lower().strip("*")
        return any(token == t.lower() for t in _TOKEN.findall(value))
    low = _key(f.value or "")
    found = _key(value)
    if found[0] != low[0]:
        return False
    if op == "BETWEEN":
        high = _key(f.highValue or "")
        return found[0] == high[0] and low <= found <= high
    return {"LT": found < low, "LTE": found <= low, "GT": found > low, "GTE": found >= low}[op]


def _same(value: str, wanted: str) -> bool:
    a, b = _key(value), _key(wanted)
    return a == b if a[0] == b[0] == 0 else value.casefold() == wanted.casefold()


def _key(value: str) -> tuple[int, float, str]:
    """``(0, number, "")`` for numbers and dates (epoch ms), else ``(1, 0, casefolded)``."""
    try:
        return 0, float(value), ""
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 1, 0.0, value.casefold()
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return 0, when.timestamp() * 1000, ""
