"""HubSpot's properties, property groups and custom object schemas (read, and create).

What ``crmsync hubspot setup`` and ``crmsync doctor`` need; the record writes are in
:mod:`shared.clients.hubspot`. Calls and shapes (``Authorization: Bearer``, API.md §1):

- ``GET /crm/v3/properties/{objectType}`` -> ``{"results": [Property]}`` and
  ``GET /crm/v3/properties/{objectType}/{propertyName}`` -> ``Property``, 404 when there
  is none [API.md §6.1: "a missing one is 404 [unverified]"];
- ``POST /crm/v3/properties/{objectType}`` ``PropertyCreate`` -> 201 ``Property``
  (API.md §6.1; required ``name``, ``label``, ``type``, ``fieldType``, ``groupName``, per
  https://developers.hubspot.com/docs/api/crm/properties); a name that exists -> 409
  (HubSpot's legacy property API documents "a 409 Conflict error if there is already a
  property with the 'name' you used",
  https://developers.hubspot.com/docs/methods/contacts/v2/create_contacts_property; v3:
  API.md §6.1 "most likely 409 [unverified]");
- ``GET|POST /crm/v3/properties/{objectType}/groups[/{groupName}]`` ``{name, label,
  displayOrder}`` -> ``{name, label, displayOrder, archived}``
  (https://developers.hubspot.com/docs/api-reference/legacy/crm/properties/groups/create-property);
  HubSpot's guide advises an integration to keep its properties in a group of its own;
- ``GET /crm-object-schemas/v3/schemas/{objectType}`` -> ``ObjectSchema`` (API.md §4),
  404 when the account has no such custom object.

``hasUniqueValue`` cannot be changed once a property exists (API.md §6.1). Errors are
:func:`~shared.clients.hubspot_policy.classify_hubspot`'s: 401 bad token, 403 missing
scope (``crm.schemas.contacts.write`` / ``crm.schemas.custom.write`` to create,
``crm.schemas.custom.read`` to read schemas, API.md §1), 429/5xx retried.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar
from urllib.parse import quote

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.clients.http import ProviderHttp, validate_reply
from shared.clients.hubspot_policy import classify_hubspot, rolling_window_limiter
from shared.errors import ProviderRejectedError
from shared.settings import ProviderSettings

PROVIDER = "hubspot"

PropertyType = Literal[
    "bool", "date", "datetime", "enumeration", "number", "phone_number", "string"
]
FieldType = Literal[
    "booleancheckbox",
    "calculation_equation",
    "checkbox",
    "date",
    "file",
    "html",
    "number",
    "phonenumber",
    "radio",
    "select",
    "text",
    "textarea",
]

M = TypeVar("M", bound=BaseModel)
_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class PropertyDefinition(BaseModel):
    """A property crmsync needs, as ``PropertyCreate`` (API.md §6.1)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    label: str
    type: PropertyType
    field_type: FieldType
    group_name: str
    description: str = ""
    has_unique_value: bool = False
    number_display_hint: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class HubSpotProperty(BaseModel):
    """A ``Property`` as HubSpot returns it; the fields crmsync reads."""

    model_config = _CAMEL

    name: str
    label: str = ""
    type: str = ""
    field_type: str = ""
    group_name: str = ""
    has_unique_value: bool = False
    hubspot_defined: bool = False
    archived: bool = False


class PropertyGroup(BaseModel):
    model_config = _CAMEL

    name: str
    label: str = ""
    display_order: int = -1
    archived: bool = False


class SchemaAssociation(BaseModel):
    """An association definition of a schema: ``{id, fromObjectTypeId, toObjectTypeId}``."""

    model_config = _CAMEL

    from_object_type_id: str
    to_object_type_id: str
    id: str | None = None
    name: str | None = None


class ObjectSchema(BaseModel):
    """A custom object's ``ObjectSchema`` (API.md §4)."""

    model_config = _CAMEL

    object_type_id: str
    name: str = ""
    id: str | None = None
    fully_qualified_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    required_properties: list[str] = Field(default_factory=list)
    properties: list[HubSpotProperty] = Field(default_factory=list)
    associations: list[SchemaAssociation] = Field(default_factory=list)


class _Properties(BaseModel):
    results: list[HubSpotProperty]


class PropertyExistsError(ProviderRejectedError):
    """409 on create: the property was created meanwhile (another setup run)."""


class HubSpotSchemaClient:
    """Properties, property groups and object schemas of one HubSpot private app.

    Args:
        session: the shared ``aiohttp.ClientSession``.
        base_url: ``https://api.hubapi.com`` or the sandbox's ``.../hubspot``.
        access_token: the private app's token (``Authorization: Bearer``); never logged.
        limiter: the app's 10 s budget (LIMITS.md §1).
        timeout_s: seconds per try.
        max_tries: tries per call, the first included (1 = no retry, for probes).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        access_token: str,
        limiter: AsyncLimiter,
        timeout_s: float = 10.0,
        max_tries: int = 3,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._http = ProviderHttp(
            session,
            provider=PROVIDER,
            limiter=limiter,
            classify=classify_hubspot,
            timeout_s=timeout_s,
            max_tries=max_tries,
        )

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: ProviderSettings, *, max_tries: int = 3
    ) -> HubSpotSchemaClient:
        """A client for ``CRMSYNC_HUBSPOT_*`` pacing at the app's budget per replica."""
        replicas = max(1, settings.hubspot_replicas)
        return cls(
            session,
            base_url=settings.hubspot_base_url,
            access_token=settings.hubspot_access_token.get_secret_value(),
            limiter=rolling_window_limiter(settings.hubspot_rate_per_10s / replicas, 10.0),
            timeout_s=settings.http_timeout_s,
            max_tries=max_tries,
        )

    async def list_properties(self, object_type: str) -> list[HubSpotProperty]:
        """``GET /crm/v3/properties/{objectType}`` (archived ones are not listed)."""
        reply = await self._get(_Properties, f"/crm/v3/properties/{_seg(object_type)}")
        assert reply is not None  # a missing object type is a 4xx, raised
        return reply.results

    async def get_property(self, object_type: str, name: str) -> HubSpotProperty | None:
        """``GET /crm/v3/properties/{objectType}/{name}``; None when HubSpot answers 404."""
        path = f"/crm/v3/properties/{_seg(object_type)}/{_seg(name)}"
        return await self._get(HubSpotProperty, path, missing_ok=True)

    async def create_property(
        self, object_type: str, definition: PropertyDefinition
    ) -> HubSpotProperty:
        """``POST /crm/v3/properties/{objectType}`` -> 201 ``Property``.

        Raises:
            PropertyExistsError: 409, a property of that name exists.
            ProviderRejectedError: other 4xx (400 bad definition, 403 missing scope).
        """
        path = f"/crm/v3/properties/{_seg(object_type)}"
        return await self._post(HubSpotProperty, path, definition.to_wire())

    async def get_group(self, object_type: str, name: str) -> PropertyGroup | None:
        """``GET /crm/v3/properties/{objectType}/groups/{name}``; None on 404."""
        path = f"/crm/v3/properties/{_seg(object_type)}/groups/{_seg(name)}"
        return await self._get(PropertyGroup, path, missing_ok=True)

    async def create_group(self, object_type: str, group: PropertyGroup) -> PropertyGroup:
        """``POST /crm/v3/properties/{objectType}/groups`` ``{name, label, displayOrder}``.

        Raises:
            PropertyExistsError: 409, the group exists.
        """
        body = {"name": group.name, "label": group.label, "displayOrder": group.display_order}
        return await self._post(
            PropertyGroup, f"/crm/v3/properties/{_seg(object_type)}/groups", body
        )

    async def get_schema(self, object_type: str) -> ObjectSchema | None:
        """``GET /crm-object-schemas/v3/schemas/{objectType}`` (type id or fully qualified
        name, API.md §4); None when the account has no such object (404)."""
        path = f"/crm-object-schemas/v3/schemas/{_seg(object_type)}"
        return await self._get(ObjectSchema, path, missing_ok=True)

    async def _get(self, model: type[M], path: str, *, missing_ok: bool = False) -> M | None:
        try:
            response = await self._http.request("GET", self._base_url + path, headers=self._headers)
        except ProviderRejectedError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise
        return validate_reply(PROVIDER, model, response.data, response)

    async def _post(self, model: type[M], path: str, body: dict[str, Any]) -> M:
        try:
            response = await self._http.request(
                "POST", self._base_url + path, json_body=body, headers=self._headers
            )
        except ProviderRejectedError as exc:
            if exc.status == 409:
                raise PropertyExistsError(PROVIDER, 409, exc.body, str(exc)) from None
            raise
        return validate_reply(PROVIDER, model, response.data, response)


def _seg(value: str) -> str:
    return quote(value, safe="")
