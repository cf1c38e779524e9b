"""What :class:`~shared.clients.hubspot.HubSpotClient` sends and returns (reference/hubspot/API.md).

Inputs are frozen pydantic models with snake_case fields; ``to_wire()`` gives HubSpot's
camelCase JSON. Replies are read tolerantly: every field HubSpot may leave out has a
default (API.md §1: "treat all error fields as optional"). Property values are strings
in both directions (API.md §1); :func:`to_property_value` makes them. The batch reply
itself and its per-input outcomes are in :mod:`shared.clients.hubspot_batch`.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

AssociationCategory = Literal["HUBSPOT_DEFINED", "INTEGRATOR_DEFINED", "USER_DEFINED", "WORK"]
FilterOperator = Literal[
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
    "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
]  # fmt: skip


def to_property_value(value: object) -> str:
    """A Python value as a HubSpot property string (API.md §1: values are strings).

    ``None`` -> ``""`` (an empty string clears the value, API.md §3.3); ``True`` ->
    ``"true"``; ``12`` / ``12.0`` / ``Decimal("12.00")`` -> ``"12"``; ``12.5`` -> ``"12.5"``;
    a ``datetime`` -> epoch milliseconds (naive means UTC), e.g. ``"1736071200000"``; a
    ``date`` -> ISO ``"2025-01-05"`` (API.md §1: epoch-ms strings or ISO dates); a ``str``
    is sent as is.

    Raises:
        ValueError: NaN or infinity.
        TypeError: any other type.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise ValueError(f"HubSpot has no value for {value!r}")
        if value == int(value):
            return str(int(value))
        # Plain notation ("0.0000001", not "1e-07"), shortest digits that round-trip.
        exact = value if isinstance(value, Decimal) else Decimal(repr(value))
        return format(exact.normalize(), "f")
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(round(aware.timestamp() * 1000))
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no HubSpot property value for {type(value).__name__}")


class AssociationSpec(BaseModel):
    """One association type (API.md §5): ``{associationCategory, associationTypeId}``.

    Type ids of custom-object pairs are account-specific: look them up (API.md §5.2).
    """

    model_config = CAMEL

    association_category: AssociationCategory
    association_type_id: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "associationCategory": self.association_category,
            "associationTypeId": self.association_type_id,
        }


class ObjectAssociation(BaseModel):
    """An association made with a create (API.md §3.1): ``{to: {id}, types: [...]}``."""

    model_config = CAMEL

    to_id: str
    types: tuple[AssociationSpec, ...] = Field(min_length=1)

    def to_wire(self) -> dict[str, Any]:
        return {"to": {"id": self.to_id}, "types": [t.to_wire() for t in self.types]}


class BatchCreateInput(BaseModel):
    """One record of ``batch/create`` (API.md §3.2).

    ``object_write_trace_id`` is required and must be unique in its batch: it is what
    lets HubSpot answer 207 instead of failing the whole batch, and what maps a result
    or an error back to this input (API.md §7 rule 3). Use the row id of the record.
    """

    model_config = CAMEL

    properties: dict[str, str]
    object_write_trace_id: str = Field(min_length=1)
    associations: tuple[ObjectAssociation, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "properties": dict(self.properties),
            "associations": [a.to_wire() for a in self.associations],
            "objectWriteTraceId": self.object_write_trace_id,
        }


class BatchUpdateInput(BaseModel):
    """One record of ``batch/update`` by HubSpot record id (API.md §3.3); ``""`` clears."""

    model_config = CAMEL

    id: str = Field(min_length=1)
    properties: dict[str, str]
    object_write_trace_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "properties": dict(self.properties)}
        if self.object_write_trace_id is not None:
            wire["objectWriteTraceId"] = self.object_write_trace_id
        return wire


class BatchUpsertInput(BaseModel):
    """One record of ``batch/upsert`` (API.md §3.4, §4): ``id`` is the value of the unique
    property ``id_property`` (``email`` for contacts, a ``hasUniqueValue`` property such as
    ``booking_ref`` for custom objects). Upsert inputs carry no associations (API.md §7
    rule 5): associate afterwards."""

    model_config = CAMEL

    id: str = Field(min_length=1)
    id_property: str = Field(min_length=1)
    properties: dict[str, str]
    object_write_trace_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "idProperty": self.id_property,
            "properties": dict(self.properties),
        }
        if self.object_write_trace_id is not None:
            wire["objectWriteTraceId"] = self.object_write_trace_id
        return wire


class AssociationInput(BaseModel):
    """One pair of ``/crm/v4/associations/{from}/{to}/batch/create`` (API.md §5.2)."""

    model_config = CAMEL

    from_id: str = Field(min_length=1)
    to_id: str = Field(min_length=1)
    types: tuple[AssociationSpec, ...] = Field(min_length=1)

    def to_wire(self) -> dict[str, Any]:
        return {
            "from": {"id": self.from_id},
            "to": {"id": self.to_id},
            "types": [t.to_wire() for t in self.types],
        }


class Filter(BaseModel):
    """A search filter (API.md §3.6): ``IN``/``NOT_IN`` take ``values``, ``BETWEEN`` takes
    ``value`` and ``high_value``, ``HAS_PROPERTY``/``NOT_HAS_PROPERTY`` take no value."""

    model_config = CAMEL

    property_name: str
    operator: FilterOperator
    value: str | None = None
    values: tuple[str, ...] | None = None
    high_value: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class FilterGroup(BaseModel):
    """Filters ANDed together; the groups of one search are ORed (API.md §3.6)."""

    model_config = CAMEL

    filters: tuple[Filter, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"filters": [f.to_wire() for f in self.filters]}


def _as_str(value: Any) -> Any:
    # Ids are strings in the spec but may be JSON numbers on the wire (API.md §1, §5.3).
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class HubSpotObject(BaseModel):
    """A CRM record (``SimplePublicObject`` / ``SimplePublicUpsertObject``, API.md §2.1).

    ``properties`` holds only properties with a value: a requested property HubSpot
    answers as ``null`` is left out, so ``.get(name)`` is None for "no value".
    ``new`` is set by upserts only (True: created by this call).
    """

    model_config = CAMEL

    id: str
    properties: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived: bool = False
    new: bool | None = None
    object_write_trace_id: str | None = None

    _id_str = field_validator("id", mode="before")(_as_str)

    @field_validator("properties", mode="before")
    @classmethod
    def _drop_nulls(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: v if isinstance(v, str) else str(v) for k, v in value.items() if v is not None}


class AssociationResult(BaseModel):
    """A created association, from either reply shape of API.md §5:
    ``LabelsBetweenObjectPair`` (``batch/create``: ``fromObjectId``, ``toObjectId``,
    ``labels``) or the default one (``{from: {id}, to: {id}, associationSpec}``)."""

    model_config = CAMEL

    from_id: str
    to_id: str
    from_object_type_id: str | None = None
    to_object_type_id: str | None = None
    labels: tuple[str, ...] = ()
    association_spec: AssociationSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _either_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "fromObjectId" in data:
            return {**data, "fromId": data["fromObjectId"], "toId": data.get("toObjectId")}
        ends = {end: (data.get(end) or {}).get("id") for end in ("from", "to")}
        return {**data, "fromId": ends["from"], "toId": ends["to"]}

    _ids_str = field_validator("from_id", "to_id", mode="before")(_as_str)


class BatchError(BaseModel):
    """One failure group of a batch reply (``StandardError``, API.md §2.3).

    ``status`` is a string (``"error"`` in HubSpot's examples); ``context`` maps a key to
    the ids / trace ids / values it concerns (keys: spec silent); ``sub_category`` may be
    a string or an object.
    """

    model_config = CAMEL

    status: str = "error"
    category: str = ""
    message: str = ""
    context: dict[str, list[str]] = Field(default_factory=dict)
    sub_category: str | dict[str, Any] | None = None
    id: str | None = None

    _status_str = field_validator("status", mode="before")(_as_str)

    @field_validator("context", mode="before")
    @classmethod
    def _lists_of_str(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {}
        as_list = {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return {k: [str(item) for item in v if item is not None] for k, v in as_list.items()}


class SearchPage(BaseModel):
    """One page of a search (API.md §3.6): ``after`` is the next page's cursor, None on
    the last page. Searches see changes late (index lag): not a read-after-write check."""

    model_config = CAMEL

    total: int = 0
    results: list[HubSpotObject] = Field(default_factory=list)
    after: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _cursor(cls, data: Any) -> Any:
        if isinstance(data, dict) and "paging" in data:
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            return {**data, "after": after}
        return data
