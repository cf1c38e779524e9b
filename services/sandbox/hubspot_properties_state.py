"""The HubSpot sandbox's property registry: properties, groups and custom object schemas
per object type id, and the two account presets (:mod:`.hubspot_properties` serves them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

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
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# The portal id in the schemas' fully qualified names (API.md §4: ``p<portalId>_<name>``).
PORTAL_ID = 4242


def new_property(
    name: str, type_: str, field_type: str, group: str, **extra: Any
) -> dict[str, Any]:
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
    return new_property(name, type_, field_type, group, hubspotDefined=True, **extra)


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
        contacts.groups["contactinformation"] = group_json("contactinformation", "Contact info")
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
                target.groups.setdefault(GROUP.name, group_json(GROUP.name, GROUP.label))
                for definition in requirement.properties:
                    wire = definition.to_wire()
                    target.properties[definition.name] = new_property(
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
        target.groups[group] = group_json(group, f"{singular} information")
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


def group_json(name: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": -1, "archived": False}
