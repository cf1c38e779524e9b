"""The HubSpot sandbox's state and its control routes (for tests, not HubSpot's API).

- ``GET /_sandbox/hubspot/objects/{objectType}`` -> ``{"objectType": "0-1", "results":
  [record]}``, a record being ``{"id", "properties" (all), "createdAt", "updatedAt",
  "archived"}``, in id order; ``GET .../objects/{objectType}/{id}`` -> record (404).
- ``POST /_sandbox/hubspot/objects/{objectType}`` ``{"properties": {...}}`` -> 201 record
  (seeds one; unique properties hold: 409 on a duplicate).
- ``GET /_sandbox/hubspot/associations/{from}/{to}`` -> ``{"results": [{"fromId",
  "toId", "types": [{"associationCategory", "associationTypeId"}]}]}``, both directions.
- ``POST /_sandbox/hubspot/unique-properties`` ``{"objectType", "properties": [..]}``
  replaces that type's unique properties; ``GET`` -> ``{"<type id>": [names]}``.
- ``POST /_sandbox/hubspot/fail-records`` ``{"objectType", "match": {"property",
  "values"}, "category"?, "message"?, "count"?, "wholeBatch"?}`` -> 201 ``{"id"}``;
  ``GET`` -> ``{"rules": [...]}``; ``DELETE`` removes them all. With ``wholeBatch``, a
  batch call holding a matching input is refused whole (400 ``VALIDATION_ERROR``,
  nothing applied) instead of failing that input alone (207).
- ``POST /_sandbox/hubspot/rate-limit`` (:class:`RateLimitSpec`) -> 200 the limits;
  ``GET`` -> the limits; ``DELETE`` turns them off.
- ``GET /_sandbox/hubspot/stats`` -> :meth:`HubSpotStats.to_json`.
- ``POST /_sandbox/hubspot/reset``: records, associations, rules, limits, stats and unique
  properties back to the start (``POST /_sandbox/reset`` does it too).

Control errors are ``{"error": "..."}``: 400 not JSON, 404 unknown, 422 invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from services.sandbox.control import control_error, read_json_object, validation_message
from services.sandbox.hubspot_limits import HubSpotStats, RateLimits, RateLimitSpec
from services.sandbox.hubspot_objects import (
    FailRule,
    Failure,
    HubSpotStore,
    normalized,
    type_id_of,
)

M = TypeVar("M", bound=BaseModel)


@dataclass
class HubSpotState:
    """Everything the HubSpot sandbox keeps."""

    store: HubSpotStore
    limits: RateLimits = field(default_factory=RateLimits)
    stats: HubSpotStats = field(default_factory=HubSpotStats)

    def reset(self) -> None:
        self.store.reset()
        self.limits.clear()
        self.stats.clear()


hubspot_key = web.AppKey("sandbox_hubspot", HubSpotState)


class _Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    property: StrictStr
    values: list[StrictStr] = Field(min_length=1)


class FailRecordsSpec(BaseModel):
    """The body of ``POST /_sandbox/hubspot/fail-records``; ``count`` inputs, or all."""

    model_config = ConfigDict(extra="forbid")

    objectType: StrictStr
    match: _Match
    category: StrictStr = "VALIDATION_ERROR"
    message: StrictStr = "Property values were not valid"
    count: int | None = Field(default=None, ge=1)
    wholeBatch: bool = False


class UniqueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objectType: StrictStr
    properties: list[StrictStr]


class SeedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    properties: dict[str, StrictStr]


def _state(request: web.Request) -> HubSpotState:
    return request.app[hubspot_key]


async def _parse(request: web.Request, model: type[M]) -> M | web.Response:
    body = await read_json_object(request)
    if body is None:
        return control_error(400, "body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        return control_error(422, validation_message(exc))


def _type_or_error(object_type: str) -> str | web.Response:
    type_id = type_id_of(object_type)
    return type_id if type_id is not None else control_error(422, f"unknown {object_type!r}")


async def list_objects(request: web.Request) -> web.Response:
    type_id = _type_or_error(request.match_info["objectType"])
    if isinstance(type_id, web.Response):
        return type_id
    records = sorted(_state(request).store.of_type(type_id).values(), key=lambda r: int(r.id))
    return web.json_response({"objectType": type_id, "results": [r.to_json() for r in records]})


async def get_object(request: web.Request) -> web.Response:
    type_id = type_id_of(request.match_info["objectType"]) or ""
    record = _state(request).store.find(type_id, request.match_info["id"])
    if record is None:
        return control_error(404, "no such record")
    return web.json_response(record.to_json())


async def seed_object(request: web.Request) -> web.Response:
    type_id = _type_or_error(request.match_info["objectType"])
    if isinstance(type_id, web.Response):
        return type_id
    spec = await _parse(request, SeedSpec)
    if isinstance(spec, web.Response):
        return spec
    created = _state(request).store.create(type_id, spec.properties)
    if isinstance(created, Failure):
        return control_error(409 if created.category == "CONFLICT" else 422, created.message)
    return web.json_response(created.to_json(), status=201)


async def list_associations(request: web.Request) -> web.Response:
    from_type = type_id_of(request.match_info["from"]) or ""
    to_type = type_id_of(request.match_info["to"]) or ""
    pairs = _state(request).store.pairs(from_type, to_type)
    results = [
        {
            "fromId": from_id,
            "toId": to_id,
            "types": [{"associationCategory": c, "associationTypeId": t} for c, t in sorted(kinds)],
        }
        for (from_id, to_id), kinds in sorted(pairs.items())
    ]
    return web.json_response({"results": results})


async def set_unique(request: web.Request) -> web.Response:
    spec = await _parse(request, UniqueSpec)
    if isinstance(spec, web.Response):
        return spec
    type_id = _type_or_error(spec.objectType)
    if isinstance(type_id, web.Response):
        return type_id
    _state(request).store.unique[type_id] = set(spec.properties)
    return await get_unique(request)


async def get_unique(request: web.Request) -> web.Response:
    unique = _state(request).store.unique
    return web.json_response({type_id: sorted(names) for type_id, names in unique.items()})


async def add_fail_rule(request: web.Request) -> web.Response:
    spec = await _parse(request, FailRecordsSpec)
    if isinstance(spec, web.Response):
        return spec
    type_id = _type_or_error(spec.objectType)
    if isinstance(type_id, web.Response):
        return type_id
    prop = spec.match.property
    rule = FailRule(
        type_id=type_id,
        property=prop,
        values={normalized(prop, v) for v in spec.match.values},
        category=spec.category,
        message=spec.message,
        remaining=spec.count,
        whole_batch=spec.wholeBatch,
    )
    _state(request).store.rules.append(rule)
    return web.json_response({"id": rule.id}, status=201)


async def list_fail_rules(request: web.Request) -> web.Response:
    return web.json_response({"rules": [r.to_json() for r in _state(request).store.rules]})


async def clear_fail_rules(request: web.Request) -> web.Response:
    _state(request).store.rules.clear()
    return web.json_response({"deleted": True})


async def set_rate_limit(request: web.Request) -> web.Response:
    spec = await _parse(request, RateLimitSpec)
    if isinstance(spec, web.Response):
        return spec
    _state(request).limits.configure(spec)
    return web.json_response(_state(request).limits.to_json())


async def get_rate_limit(request: web.Request) -> web.Response:
    return web.json_response(_state(request).limits.to_json())


async def clear_rate_limit(request: web.Request) -> web.Response:
    _state(request).limits.clear()
    return web.json_response(_state(request).limits.to_json())


async def stats(request: web.Request) -> web.Response:
    return web.json_response(_state(request).stats.to_json())


async def reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"reset": True})


def add_routes(app: web.Application) -> None:
    """Add the routes above (the state is :func:`services.sandbox.hubspot.setup`'s)."""
    root = "/_sandbox/hubspot"
    app.router.add_get(f"{root}/objects/{{objectType}}", list_objects)
    app.router.add_post(f"{root}/objects/{{objectType}}", seed_object)
    app.router.add_get(f"{root}/objects/{{objectType}}/{{id}}", get_object)
    app.router.add_get(f"{root}/associations/{{from}}/{{to}}", list_associations)
    app.router.add_post(f"{root}/unique-properties", set_unique)
    app.router.add_get(f"{root}/unique-properties", get_unique)
    app.router.add_post(f"{root}/fail-records", add_fail_rule)
    app.router.add_get(f"{root}/fail-records", list_fail_rules)
    app.router.add_delete(f"{root}/fail-records", clear_fail_rules)
    app.router.add_post(f"{root}/rate-limit", set_rate_limit)
    app.router.add_get(f"{root}/rate-limit", get_rate_limit)
    app.router.add_delete(f"{root}/rate-limit", clear_rate_limit)
    app.router.add_get(f"{root}/stats", stats)
    app.router.add_post(f"{root}/reset", reset)
