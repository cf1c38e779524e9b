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

``POST /_sandbox/reset`` returns to the ``crmsync`` preset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
from services.sandbox.hubspot_objects import HubSpotStore, iso_now, type_id_of
from shared.hubspot_setup import GROUP, required_objects
from shared.settings import ProviderSettings

# Pairs of type and fieldType the sandbox accepts (HubSpot's guide lists the field types
# of each type; this table is our reading of it [unverified]).
FIELD_TYPES = {
    "bool": {"booleancheckbox", "calculation_equation"},
    "enumeration": {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "string": {"file", "text", "textarea", "html", "phonenumber", "calculation_equation"},
    "number": {"number", "calculation_equation"},
    "phone_number": {"phonenumber"},
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# The portal id in the schemas' fully qualified names (API.md §4: ``p<portalId>_<name>``).
PORTAL_ID = 4242


def _property(name: str, type_: str, field_type: str, group: str, **extra: Any) -> dict[str, Any]:
    now = iso_now()
    return {
        "name": name,
        "label": extra.pop("label", name),
        "type": type_,
        "fieldType": field_type,
        "groupName": group,
        "description": extra.pop("description", ""),
        "options": extra.pop("options", []),
        "displayOrder": extra.pop("displayOrder", -1),
        "hasUniqueValue": bool(extra.pop("hasUniqueValue", False)),
        "hidden": bool(extra.pop("hidden", False)),
        "formField": bool(extra.pop("formField", False)),
        "hubspotDefined": bool(extra.pop("hubspotDefined", False)),
        "calculated": False,
        "externalOptions": False,
        "archived": False,
        "createdAt": now,
        "updatedAt": now,
        "modificationMetadata": {
            "archivable": True,
            "readOnlyDefinition": False,
            "readOnlyValue": False,
        },
        **extra,
    }


def _builtin(name: str, type_: str, field_type: str, group: str, **extra: Any) -> dict[str, Any]:
    return _property(name, type_, field_type, group, hubspotDefined=True, **extra)


@dataclass
class ObjectProperties:
    """One object type's property groups and properties, by name."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class PropertiesState:
    """Properties by object type id, and the custom object schemas by type id."""

    settings: ProviderSettings
    store: HubSpotStore
    objects: dict[str, ObjectProperties] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def preset(self, name: Literal["fresh", "crmsync"]) -> None:
        """A new account (``fresh``), or one ``crmsync hubspot setup`` has set up."""
        self.objects.clear()
        self.schemas.clear()
        contacts = self.objects.setdefault("0-1", ObjectProperties())
        contacts.groups["contactinformation"] = _group("contactinformation", "Contact info")
        for prop in (
            _builtin("email", "string", "text", "contactinformation", hasUniqueValue=True),
            _builtin("firstname", "string", "text", "contactinformation"),
            _builtin("lastname", "string", "text", "contactinformation"),
            _builtin("hs_object_id", "number", "number", "contactinformation"),
            _builtin("createdate", "datetime", "date", "contactinformation"),
            _builtin("lastmodifieddate", "datetime", "date", "contactinformation"),
        ):
            contacts.properties[prop["name"]] = prop
        booking = self.settings.hubspot_booking_object_type
        exam = self.settings.hubspot_mock_exam_object_type
        self._schema(booking, "booking", "Booking", "Bookings", ["0-1", exam])
        self._schema(exam, "mock_exam", "Mock exam", "Mock exams", [booking])
        if name == "crmsync":
            for requirement in required_objects(self.settings):
                type_id = type_id_of(requirement.object_type) or requirement.object_type
                target = self.objects.setdefault(type_id, ObjectProperties())
                target.groups.setdefault(GROUP.name, _group(GROUP.name, GROUP.label))
                for definition in requirement.properties:
                    wire = definition.to_wire()
                    target.properties[definition.name] = _property(
                        wire.pop("name"),
                        wire.pop("type"),
                        wire.pop("fieldType"),
                        wire.pop("groupName"),
                        **wire,
                    )
        self.sync_unique()

    def _schema(self, type_id: str, name: str, singular: str, plural: str, to: list[str]) -> None:
        group = f"{name}_information"
        target = self.objects.setdefault(type_id, ObjectProperties())
        target.groups[group] = _group(group, f"{singular} information")
        for prop in (
            _builtin("hs_object_id", "number", "number", group),
            _builtin("hs_createdate", "datetime", "date", group),
            _builtin("hs_lastmodifieddate", "datetime", "date", group),
        ):
            target.properties[prop["name"]] = prop
        now = iso_now()
        self.schemas[type_id] = {
            "id": type_id.removeprefix("2-"),
            "objectTypeId": type_id,
            "name": name,
            "fullyQualifiedName": f"p{PORTAL_ID}_{name}",
            "labels": {"singular": singular, "plural": plural},
            "requiredProperties": [],
            "searchableProperties": [],
            "secondaryDisplayProperties": [],
            "archived": False,
            "createdAt": now,
            "updatedAt": now,
            "associations": [
                {"id": str(100 + i), "fromObjectTypeId": type_id, "toObjectTypeId": other}
                for i, other in enumerate(to)
            ],
        }

    def sync_unique(self) -> None:
        """The store's upsert keys are exactly the properties with ``hasUniqueValue``."""
        for type_id, props in self.objects.items():
            self.store.unique[type_id] = {
                n for n, p in props.properties.items() if p["hasUniqueValue"]
            }

    def resolve(self, given: str) -> str | None:
        """A path's object type as a type id known here (a schema's name and fully
        qualified name work too); None when the account has no such object."""
        type_id = type_id_of(given)
        if type_id is None:
            return None
        if type_id in self.objects:
            return type_id
        for schema in self.schemas.values():
            if given.lower() in (schema["name"], schema["fullyQualifiedName"].lower()):
                return str(schema["objectTypeId"])
        return None


properties_key = web.AppKey("sandbox_hubspot_properties", PropertiesState)


def _group(name: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": -1, "archived": False}


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
    if not _NAME.match(spec.name):
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
    created = _property(
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
    if not _NAME.match(spec.name):
        raise HubSpotError(400, f"Group name {spec.name!r} must be lowercase letters and digits")
    if spec.name in props.groups:
        raise HubSpotError(409, f"A group named '{spec.name}' already exists.", "CONFLICT")
    props.groups[spec.name] = group = _group(spec.name, spec.label) | {
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
