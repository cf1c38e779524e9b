"""The HubSpot sandbox's properties, property groups and custom object schemas.

API routes (behind :func:`services.sandbox.hubspot.hubspot_middleware`: token, rate
limits, stats), shapes as :mod:`shared.clients.hubspot_properties` cites them:

- ``GET /hubspot/crm/v3/properties/{objectType}`` -> ``{"results": [Property]}``;
  ``GET .../{objectType}/{propertyName}`` -> ``Property`` or 404 ``OBJECT_NOT_FOUND``;
- ``POST /hubspot/crm/v3/properties/{objectType}`` ``PropertyCreate`` -> 201 ``Property``
  with ``Location``; 409 ``CONFLICT`` when the name exists; 400 ``VALIDATION_ERROR`` for a
  missing field, an unknown ``type`` / ``fieldType`` or a pair that does not go together
  (enforced by HubSpot's v3 since 2021-02-01,
  https://developers.hubspot.com/changelog/crm-object-property-validattion; the pairs
  below are our reading [unverified]), a group that does not exist, an enumeration
  without options. ``hasUniqueValue: true`` makes the property an ``idProperty`` batch
  upserts accept (:mod:`services.sandbox.hubspot_objects` unique properties);
- ``GET|POST /hubspot/crm/v3/properties/{objectType}/groups``, ``GET .../groups/{name}``;
- ``GET /hubspot/crm-object-schemas/v3/schemas`` -> ``{"results": [ObjectSchema]}``,
  ``GET .../schemas/{objectType}`` (type id or fully qualified name) -> 404 when absent.

An account starts **set up** for crmsync (the properties of
:func:`shared.hubspot_setup.required_objects` exist), so the other sandbox tests need no
setup step. Control routes:

- ``POST /_sandbox/hubspot/account`` ``{"preset": "fresh" | "crmsync"}``: ``fresh`` is a
  new account: HubSpot's own properties and the two custom objects
  (``ProviderSettings.hubspot_*_object_type``), none of crmsync's properties, so batch
  upserts by ``booking_ref`` / ``exam_ref`` are refused until they are created;
- ``DELETE /_sandbox/hubspot/properties/{objectType}/{name}``,
  ``DELETE /_sandbox/hubspot/schemas/{objectType}``: take one away.

``POST /_sandbox/reset`` returns to the ``crmsync`` preset (``POST /_sandbox/hubspot/reset``
resets the records' upsert keys only, not this registry).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from services.sandbox.control import (
    control_error,
    on_reset,
    read_json_object,
    settings_key,
    validation_message,
)
from services.sandbox.hubspot_api import HubSpotError
from services.sandbox.hubspot_control import hubspot_key
from services.sandbox.hubspot_objects import type_id_of
from services.sandbox.hubspot_properties_state import (
    FIELD_TYPES,
    NAME,
    ObjectProperties,
    PropertiesState,
    group_json,
    new_property,
    properties_key,
)


class PropertyCreateIn(BaseModel):
    """``PropertyCreate`` (API.md §6.1); fields beyond these are kept as sent."""

    model_config = ConfigDict(extra="allow")

    name: StrictStr
    label: StrictStr
    type: StrictStr
    fieldType: StrictStr
    groupName: StrictStr
    hasUniqueValue: StrictBool = False
    options: list[dict[str, Any]] = []


class GroupCreateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: StrictStr
    label: StrictStr
    displayOrder: int = -1


def _state(request: web.Request) -> PropertiesState:
    return request.app[properties_key]


def _object(request: web.Request) -> tuple[str, ObjectProperties]:
    given = request.match_info["objectType"]
    state = _state(request)
    type_id = state.resolve(given)
    if type_id is None:
        if type_id_of(given) is None:
            raise HubSpotError(400, f"Unable to infer object type from: {given}")
        raise HubSpotError(404, f"Object type {given} not found", "OBJECT_NOT_FOUND")
    return type_id, state.objects[type_id]


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json_object(request)
    if body is None:
        raise HubSpotError(400, "Invalid input JSON: the body must be a JSON object")
    return body


async def list_properties(request: web.Request) -> web.Response:
    _, props = _object(request)
    return web.json_response({"results": list(props.properties.values())})


async def get_property(request: web.Request) -> web.Response:
    type_id, props = _object(request)
    name = request.match_info["propertyName"]
    found = props.properties.get(name)
    if found is None:
        raise HubSpotError(404, f"Property {name} does not exist for {type_id}", "OBJECT_NOT_FOUND")
    return web.json_response(found)


def _invalid(spec: PropertyCreateIn, props: ObjectProperties) -> str | None:
    if not NAME.match(spec.name):
        return f"Property name {spec.name!r} must be lowercase letters, digits and underscores"
    allowed = FIELD_TYPES.get(spec.type)
    if allowed is None:
        return f"type must be one of {sorted(FIELD_TYPES)}, got {spec.type!r}"
    if spec.fieldType not in allowed:
        return f"fieldType {spec.fieldType!r} is not valid for type {spec.type!r}"
    if spec.groupName not in props.groups:
        return f"Property group {spec.groupName!r} does not exist"
    if spec.type == "enumeration" and not spec.options:
        return "An enumeration property needs options"
    return None


async def create_property(request: web.Request) -> web.Response:
    _, props = _object(request)
    try:
        spec = PropertyCreateIn.model_validate(await _body(request))
    except ValidationError as exc:
        raise HubSpotError(400, f"Invalid input JSON: {validation_message(exc)}") from None
    if (problem := _invalid(spec, props)) is not None:
        raise HubSpotError(400, problem)
    if spec.name in props.properties:
        raise HubSpotError(409, f"A property named '{spec.name}' already exists.", "CONFLICT")
    wire = spec.model_dump()
    created = new_property(
        wire.pop("name"), wire.pop("type"), wire.pop("fieldType"), wire.pop("groupName"), **wire
    )
    props.properties[spec.name] = created
    _state(request).sync_unique()
    location = f"{request.path}/{spec.name}"
    return web.json_response(created, status=201, headers={"Location": location})


async def list_groups(request: web.Request) -> web.Response:
    _, props = _object(request)
    return web.json_response({"results": list(props.groups.values())})


async def get_group(request: web.Request) -> web.Response:
    _, props = _object(request)
    name = request.match_info["groupName"]
    if name not in props.groups:
        raise HubSpotError(404, f"Property group {name} does not exist", "OBJECT_NOT_FOUND")
    return web.json_response(props.groups[name])


async def create_group(request: web.Request) -> web.Response:
    _, props = _object(request)
    try:
        spec = GroupCreateIn.model_validate(await _body(request))
    except ValidationError as exc:
        raise HubSpotError(400, f"Invalid input JSON: {validation_message(exc)}") from None
    if not NAME.match(spec.name):
        raise HubSpotError(400, f"Group name {spec.name!r} must be lowercase letters and digits")
    if spec.name in props.groups:
        raise HubSpotError(409, f"A group named '{spec.name}' already exists.", "CONFLICT")
    props.groups[spec.name] = group = group_json(spec.name, spec.label) | {
        "displayOrder": spec.displayOrder
    }
    return web.json_response(group, status=201)


def _schema_json(state: PropertiesState, schema: dict[str, Any]) -> dict[str, Any]:
    props = state.objects.get(schema["objectTypeId"], ObjectProperties()).properties
    return schema | {"properties": list(props.values())}


async def list_schemas(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response({"results": [_schema_json(state, s) for s in state.schemas.values()]})


async def get_schema(request: web.Request) -> web.Response:
    state = _state(request)
    given = request.match_info["objectType"]
    type_id = state.resolve(given)
    schema = state.schemas.get(type_id or "")
    if schema is None:
        raise HubSpotError(404, f"Unable to find object type {given}", "OBJECT_NOT_FOUND")
    return web.json_response(_schema_json(state, schema))


class AccountSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["fresh", "crmsync"]


async def set_account(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    try:
        spec = AccountSpec.model_validate(body)
    except ValidationError as exc:
        return control_error(422, validation_message(exc))
    _state(request).preset(spec.preset)
    return web.json_response({"preset": spec.preset})


async def delete_property(request: web.Request) -> web.Response:
    state = _state(request)
    type_id = state.resolve(request.match_info["objectType"])
    props = state.objects.get(type_id or "")
    if props is None or props.properties.pop(request.match_info["name"], None) is None:
        return control_error(404, "no such property")
    state.sync_unique()
    return web.json_response({"deleted": True})


async def delete_schema(request: web.Request) -> web.Response:
    state = _state(request)
    type_id = state.resolve(request.match_info["objectType"]) or ""
    if state.schemas.pop(type_id, None) is None:
        return control_error(404, "no such schema")
    state.objects.pop(type_id, None)
    for schema in state.schemas.values():  # its association definitions go with it
        schema["associations"] = [
            a
            for a in schema["associations"]
            if type_id not in (a["fromObjectTypeId"], a["toObjectTypeId"])
        ]
    return web.json_response({"deleted": True})


def setup(app: web.Application) -> None:
    """Add the routes above; needs :func:`services.sandbox.hubspot.setup` first."""
    state = PropertiesState(app[settings_key], app[hubspot_key].store)
    state.preset("crmsync")
    app[properties_key] = state
    on_reset(app, lambda: state.preset("crmsync"))
    props = "/hubspot/crm/v3/properties/{objectType}"
    app.router.add_get(f"{props}/groups", list_groups)
    app.router.add_post(f"{props}/groups", create_group)
    app.router.add_get(f"{props}/groups/{{groupName}}", get_group)
    app.router.add_get(props, list_properties)
    app.router.add_post(props, create_property)
    app.router.add_get(f"{props}/{{propertyName}}", get_property)
    app.router.add_get("/hubspot/crm-object-schemas/v3/schemas", list_schemas)
    app.router.add_get("/hubspot/crm-object-schemas/v3/schemas/{objectType}", get_schema)
    app.router.add_post("/_sandbox/hubspot/account", set_account)
    app.router.add_delete("/_sandbox/hubspot/properties/{objectType}/{name}", delete_property)
    app.router.add_delete("/_sandbox/hubspot/schemas/{objectType}", delete_schema)
