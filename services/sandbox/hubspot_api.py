"""Helpers every HubSpot sandbox route shares: errors, bodies, the batch envelope.

Shapes: API.md §2.2 / §2.3 (batch envelopes, ``StandardError``), §2.4 (``Error``).
"""

from __future__ import annotations

import uuid
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from services.sandbox.control import validation_message
from services.sandbox.hubspot_control import HubSpotState, hubspot_key
from services.sandbox.hubspot_objects import Failure, Record, iso_now, type_id_of

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
# Inputs of an object batch (LIMITS.md §3); the sandbox applies it to association
# writes too (the client's limit; HubSpot's own is spec silent, API.md §5.1).
MAX_INPUTS = 100
_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
}


class HubSpotError(Exception):
    """Answer the whole call with HubSpot's ``Error`` body (API.md §2.4)."""

    def __init__(
        self, status: int, message: str, category: str = "", context: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.context = status, message, context
        self.category = category

    def response(self) -> web.Response:
        body = error_body(self.status, self.message, self.category)
        if self.context:
            body["context"] = self.context
        return web.json_response(body, status=self.status)


def error_body(status: int, message: str = "", category: str = "") -> dict[str, Any]:
    """``{"status": "error", "message", "correlationId", "category"}`` (API.md §2.4)."""
    fallback = "INTERNAL_ERROR" if status >= 500 else "ERROR"
    return {
        "status": "error",
        "message": message or f"HTTP {status}",
        "correlationId": str(uuid.uuid4()),
        "category": category or _CATEGORIES.get(status, fallback),
    }


def object_type(request: web.Request, name: str = "objectType") -> str:
    """The path's object type as a type id; 400 when HubSpot would not know it."""
    given = request.match_info[name]
    type_id = type_id_of(given)
    if type_id is None:
        raise HubSpotError(400, f"Unable to infer object type from: {given}")
    return type_id


async def parse(request: web.Request, model: type[M]) -> M:
    """The body as ``model``; 400 ``VALIDATION_ERROR`` when it is not one."""
    try:
        body = await request.json()
    except ValueError:
        raise HubSpotError(400, "Invalid input JSON: the body is not JSON") from None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HubSpotError(400, f"Invalid input JSON: {validation_message(exc)}") from None


def check_size(request: web.Request, count: int, most: int = MAX_INPUTS) -> None:
    """Record the batch size in the stats; 400 above ``most`` inputs (LIMITS.md §3)."""
    if count > most:
        raise HubSpotError(
            400, f"The maximum number of inputs supported in a batch request is {most}"
        )
    key = f"{request.method} {request.path.removeprefix('/hubspot')}"
    request.app[hubspot_key].stats.batch_sizes.setdefault(key, []).append(count)


def unique_property(state: HubSpotState, type_id: str, name: str | None) -> str:
    """``name`` if records of ``type_id`` may be found by it; 400 otherwise (API.md §3.3)."""
    if name is None:
        raise HubSpotError(400, "idProperty is required to upsert")
    if name != "hs_object_id" and name not in state.store.unique.get(type_id, set()):
        raise HubSpotError(
            400, f"Unable to perform update/upsert by non-unique {type_id} property: {name}"
        )
    return name


def batch_reply(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], started_at: str
) -> dict[str, Any]:
    """The batch envelope (API.md §2.2; with ``errors`` and ``numErrors``, §2.3)."""
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body.update(errors=errors, numErrors=len(errors))
    return body | {"startedAt": started_at, "completedAt": iso_now()}


def input_error(
    failure: Failure, trace: str | None = None, ids: list[str] | None = None
) -> dict[str, Any]:
    """A ``StandardError`` (API.md §2.3) naming one input by trace id and ids."""
    context: dict[str, list[str]] = {}
    if ids or failure.ids:
        context["ids"] = list(dict.fromkeys([*(ids or []), *failure.ids]))
    if trace:
        context["objectWriteTraceId"] = [trace]
    return {
        "status": "error",
        "category": failure.category,
        "message": failure.message,
        "context": context,
        "errors": [],
        "links": {},
        "id": str(uuid.uuid4()),
    }


def record_reply(record: Record, trace: str | None = None, **extra: Any) -> dict[str, Any]:
    """A written record as a result, echoing its ``objectWriteTraceId`` (API.md §2.1)."""
    reply = record.to_json() | extra
    return reply | ({"objectWriteTraceId": trace} if trace else {})


def values(properties: dict[str, str | None]) -> dict[str, str]:
    """Property values to store; null clears, like ``""`` (API.md §3.3)."""
    return {name: value or "" for name, value in properties.items()}


class In(BaseModel):
    """A request body part; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")


class Ref(In):
    id: StrictStr


class AssociationType(In):
    associationCategory: Literal["HUBSPOT_DEFINED", "INTEGRATOR_DEFINED", "USER_DEFINED", "WORK"]
    associationTypeId: StrictInt

    def kind(self) -> tuple[str, int]:
        return self.associationCategory, self.associationTypeId


class CreateAssociation(In):
    to: Ref
    types: list[AssociationType] = Field(min_length=1)


class CreateIn(In):
    properties: dict[str, StrictStr | None]
    associations: list[CreateAssociation] = Field(default_factory=list)
    objectWriteTraceId: StrictStr | None = None


class WriteIn(In):
    """An update or upsert input: ``id`` is a record id or, with ``idProperty``, a value."""

    id: StrictStr
    properties: dict[str, StrictStr | None]
    idProperty: StrictStr | None = None
    objectWriteTraceId: StrictStr | None = None


class ReadIn(In):
    inputs: list[Ref]
    properties: list[StrictStr] = Field(default_factory=list)
    propertiesWithHistory: list[StrictStr] = Field(default_factory=list)
    idProperty: StrictStr | None = None


class Batch(In, Generic[T]):
    inputs: list[T]
