"""The Commerce7 API subset crmsync uses: club memberships.

``http://HOST:PORT/commerce7/v1`` stands in for ``https://api.commerce7.com/v1``
(reference/commerce7/NOTES.md §1). Every request needs Basic auth with
``ProviderSettings.commerce7_app_id`` / ``commerce7_app_secret`` (else 401) and a
``tenant`` header (else 400); state is kept per tenant. Errors are
``{"statusCode": s, "type": "<camelCase>", "message": "..."}`` (NOTES.md §7).

- ``POST /commerce7/v1/club-membership`` -> 200 membership (NOTES.md §4, "API create")
- ``GET /commerce7/v1/club-membership?customerId=&clubId=&limit=50&page=1`` ->
  ``{"clubMemberships": [...], "total": n}`` (NOTES.md §2, §4)
- ``GET /commerce7/v1/club-membership/{id}`` -> membership or 404
- ``PUT /commerce7/v1/club-membership/{id}`` ``{cancelDate, cancellationReason}`` ->
  membership (NOTES.md §4, "API cancel")

Control route: ``GET /_sandbox/commerce7/{tenant}/club-memberships?customerId=`` ->
``{"clubMemberships": [...]}`` (every page).
"""

from __future__ import annotations

import base64
import hmac
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from services.sandbox.control import on_reset, read_json_object, settings_key
from services.sandbox.faults import register_provider

# Commerce7 requires a reason from its own list when cancelling (NOTES.md §4).
CANCELLATION_REASONS = frozenset(
    {
        "Other",
        "Moved",
        "Financial",
        "Too Much Wine",
        "Deceased",
        "Unhappy With Service",
        "Unhappy With Wine",
        "Shipping Costs",
    }
)
# "All get requests for lists have a limit of 50 records per page" (NOTES.md §2).
max_page_limit = 50
_OPTIONAL_FIELDS = (
    "orderDeliveryMethod",
    "billToCustomerAddressId",
    "shipToCustomerAddressId",
    "customerCreditCardId",
)
_ERROR_TYPES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "notFound",
    422: "validationError",
    429: "tooManyRequests",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ClubMembership:
    """A club membership in Commerce7's camelCase; ``asdict`` is its JSON."""

    customerId: str
    clubId: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    signupDate: str = field(default_factory=_now)
    cancelDate: str | None = None
    cancellationReason: str | None = None
    status: str = "Active"
    orderDeliveryMethod: str | None = None
    billToCustomerAddressId: str | None = None
    shipToCustomerAddressId: str | None = None
    customerCreditCardId: str | None = None
    createdAt: str = field(default_factory=_now)
    updatedAt: str = field(default_factory=_now)


@dataclass
class Commerce7State:
    """Club memberships by tenant, then by id, in creation order."""

    memberships: dict[str, dict[str, ClubMembership]] = field(default_factory=dict)

    def tenant(self, tenant: str) -> dict[str, ClubMembership]:
        return self.memberships.setdefault(tenant, {})

    def reset(self) -> None:
        self.memberships.clear()


commerce7_key = web.AppKey("sandbox_commerce7", Commerce7State)


def commerce7_error_body(status: int) -> dict[str, Any]:
    """``{"statusCode": s, "type": "tooManyRequests"|"serverError"|..., "message"}``."""
    kind = _ERROR_TYPES.get(status, "serverError" if status >= 500 else "badRequest")
    messages = {"tooManyRequests": "Too many requests", "serverError": "Internal server error"}
    return {"statusCode": status, "type": kind, "message": messages.get(kind, kind)}


def _error(status: int, message: str) -> web.Response:
    body = {"statusCode": status, "type": _ERROR_TYPES[status], "message": message}
    return web.json_response(body, status=status)


def _basic_credentials(header: str) -> bytes:
    """``login:password`` from a Basic ``Authorization`` header (RFC 7617), or b""."""
    # Decoded by hand: aiohttp 3.14 deprecates BasicAuth and has no replacement decoder.
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return b""


def _tenant_or_error(request: web.Request) -> str | web.Response:
    """The request's tenant, or the 401/400 answer when credentials or tenant are wrong."""
    settings = request.app[settings_key]
    expected = f"{settings.commerce7_app_id}:{settings.commerce7_app_secret.get_secret_value()}"
    given = _basic_credentials(request.headers.get("Authorization", ""))
    if not hmac.compare_digest(given, expected.encode()):
        return _error(401, "Invalid app credentials")
    tenant = request.headers.get("tenant", "").strip()
    if not tenant:
        return _error(400, "The tenant header is required")
    return tenant


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _apply(membership: ClubMembership, body: dict[str, Any]) -> str | None:
    """Apply the writable fields of ``body``; a validation message when one is wrong."""
    for name in _OPTIONAL_FIELDS:
        if name in body and not (body[name] is None or isinstance(body[name], str)):
            return f"{name} must be a string or null"
    if "signupDate" in body and not _is_date(body["signupDate"]):
        return "signupDate must be an ISO 8601 date"
    reason = body.get("cancellationReason")
    if reason is not None and reason not in CANCELLATION_REASONS:
        return f"cancellationReason must be one of {sorted(CANCELLATION_REASONS)}"
    cancel_date = body.get("cancelDate")
    if cancel_date is not None:
        if not _is_date(cancel_date):
            return "cancelDate must be an ISO 8601 date"
        if reason is None:
            return "cancellationReason is required when cancelDate is set"

    for name in (*_OPTIONAL_FIELDS, "signupDate"):
        if name in body:
            setattr(membership, name, body[name])
    if "cancelDate" in body:
        membership.cancelDate = cancel_date
        membership.cancellationReason = reason if cancel_date is not None else None
        membership.status = "Cancelled" if cancel_date is not None else "Active"
    elif reason is not None:
        membership.cancellationReason = reason
    membership.updatedAt = _now()
    return None


async def create_membership(request: web.Request) -> web.Response:
    """Create from ``{customerId, clubId, signupDate?, orderDeliveryMethod?, ...}``.

    Missing ``customerId``/``clubId`` -> 422. Duplicates are allowed: the real API's
    rule for a second membership of the same club is not documented (NOTES.md "Not found").
    """
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    body = await read_json_object(request)
    if body is None:
        return _error(400, "Body must be a JSON object")
    for name in ("customerId", "clubId"):
        if not isinstance(body.get(name), str) or not body[name]:
            return _error(422, f"{name} is required")
    membership = ClubMembership(customerId=body["customerId"], clubId=body["clubId"])
    if (problem := _apply(membership, body)) is not None:
        return _error(422, problem)
    membership.updatedAt = membership.createdAt
    request.app[commerce7_key].tenant(tenant)[membership.id] = membership
    return web.json_response(asdict(membership))


def _page_arg(request: web.Request, name: str, default: int, top: int) -> int | None:
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        return None
    return int(raw)


async def list_memberships(request: web.Request) -> web.Response:
    """``{"clubMemberships": [...], "total": n}`` filtered by ``customerId``/``clubId``."""
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    limit = _page_arg(request, "limit", max_page_limit, max_page_limit)
    page = _page_arg(request, "page", 1, 1_000_000)
    if limit is None or page is None:
        return _error(422, f"limit must be 1..{max_page_limit} and page a positive integer")
    found = _matching(request.app[commerce7_key].tenant(tenant), request)
    chunk = found[(page - 1) * limit : page * limit]
    return web.json_response({"clubMemberships": chunk, "total": len(found)})


def _matching(memberships: dict[str, ClubMembership], request: web.Request) -> list[Any]:
    customer_id = request.query.get("customerId")
    club_id = request.query.get("clubId")
    return [
        asdict(m)
        for m in memberships.values()
        if (customer_id is None or m.customerId == customer_id)
        and (club_id is None or m.clubId == club_id)
    ]


async def get_membership(request: web.Request) -> web.Response:
    """The membership, or 404 ``{"statusCode": 404, "type": "notFound", ...}``."""
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    membership = request.app[commerce7_key].tenant(tenant).get(request.match_info["id"])
    if membership is None:
        return _error(404, "Club membership not found")
    return web.json_response(asdict(membership))


async def update_membership(request: web.Request) -> web.Response:
    """Cancel with ``{cancelDate, cancellationReason}`` (status ``Cancelled``).

    A ``cancelDate`` without a reason from :data:`CANCELLATION_REASONS` -> 422;
    ``cancelDate: null`` makes the membership ``Active`` again.
    """
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    membership = request.app[commerce7_key].tenant(tenant).get(request.match_info["id"])
    if membership is None:
        return _error(404, "Club membership not found")
    body = await read_json_object(request)
    if body is None:
        return _error(400, "Body must be a JSON object")
    if (problem := _apply(membership, body)) is not None:
        return _error(422, problem)
    return web.json_response(asdict(membership))


async def control_memberships(request: web.Request) -> web.Response:
    memberships = request.app[commerce7_key].tenant(request.match_info["tenant"])
    return web.json_response({"clubMemberships": _matching(memberships, request)})


def setup(app: web.Application) -> None:
    """Add the Commerce7 routes, their state and their fault body. Needs ``faults.setup``."""
    state = Commerce7State()
    app[commerce7_key] = state
    on_reset(app, state.reset)
    register_provider(app, "commerce7", commerce7_error_body)
    app.router.add_post("/commerce7/v1/club-membership", create_membership)
    app.router.add_get("/commerce7/v1/club-membership", list_memberships)
    app.router.add_get("/commerce7/v1/club-membership/{id}", get_membership)
    app.router.add_put("/commerce7/v1/club-membership/{id}", update_membership)
    app.router.add_get("/_sandbox/commerce7/{tenant}/club-memberships", control_memberships)
