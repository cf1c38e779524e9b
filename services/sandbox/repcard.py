"""The RepCard API subset the W5 pull uses, under ``/repcard`` (reference/repcard/NOTES.md).

``http://HOST:PORT/repcard`` stands in for ``https://app.repcard.com/api``. Every request
needs ``x-api-key`` equal to ``ProviderSettings.repcard_api_key`` (else 401
``{"status": 0, "message": "Unauthenticated."}``). Lists take ``page`` (1-based,
default 1) and ``per_page`` (default 100, at most 500) and answer
``{"status": 1, "message": "...", "result": {"data": [...], "currentPage": p,
"perPage": n, "total": t, "totalPages": ceil(t / n)}}`` (NOTES.md: ``per_page`` +
``page``, ``totalPages``, lists under ``result.data``); a page past the last is empty.
``from_date`` / ``to_date`` (``YYYY-MM-DD``, inclusive) filter by the day of
``updatedAt`` where NOTES.md shows date filters (appointments, status logs) and, as
this sandbox's assumption, on customers and both attachment lists.

- ``GET /repcard/users/minimal?company_id`` · ``GET /repcard/offices``
- ``GET /repcard/customers`` · ``GET /repcard/customers/{id}``
- ``GET /repcard/customers/{id}/status-logs`` · ``GET /repcard/customers/{id}/attachments``
- ``GET /repcard/appointments`` · ``GET /repcard/customers/attachments`` ·
  ``GET /repcard/appointments/attachments``

Control routes (tests): ``POST /_sandbox/repcard/company`` ``{"seed", "users", ...}``
regenerates the company (sizes by entity name of :data:`ENTITIES`);
``GET /_sandbox/repcard/counts``; ``PATCH /_sandbox/repcard/{entity}/{id}`` merges
fields and moves ``updatedAt``; ``POST /_sandbox/repcard/{entity}`` adds a record;
``POST /_sandbox/repcard/hidden`` ``{"entity", "ids", "hidden": true}`` hides records
from lists (a child then arrives before its parent).
"""

from __future__ import annotations

import hmac
import math
from datetime import date
from typing import Any

from aiohttp import web

from services.sandbox.control import control_error, on_reset, read_json_object, settings_key
from services.sandbox.faults import generic_error_body, register_provider
from services.sandbox.repcard_data import DEFAULT_SIZES, ENTITIES, RepCardCompany

repcard_key = web.AppKey("sandbox_repcard", RepCardCompany)
max_per_page = 500


def repcard_error_body(status: int) -> dict[str, Any]:
    """``{"status": 0, "message": "<reason>"}``: RepCard's error shape is undocumented."""
    return {"status": 0, "message": generic_error_body(status)["error"]}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": 0, "message": message}, status=status)


def _authorised(request: web.Request) -> bool:
    expected = request.app[settings_key].repcard_api_key.get_secret_value().encode()
    return hmac.compare_digest(request.headers.get("x-api-key", "").encode(), expected)


def _int_param(request: web.Request, name: str, default: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    return int(raw) if raw.isdigit() and int(raw) >= 1 else None


def _date_param(request: web.Request, name: str) -> date | str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return f"{name} must be YYYY-MM-DD"


def _listing(request: web.Request, records: list[dict[str, Any]]) -> web.Response:
    if not _authorised(request):
        return _error(401, "Unauthenticated.")
    page, per_page = _int_param(request, "page", 1), _int_param(request, "per_page", 100)
    if page is None or per_page is None or per_page > max_per_page:
        return _error(
            422, f"page and per_page must be positive integers (per_page <= {max_per_page})"
        )
    start, end = _date_param(request, "from_date"), _date_param(request, "to_date")
    if isinstance(start, str) or isinstance(end, str):
        return _error(422, str(start if isinstance(start, str) else end))
    if start is not None or end is not None:
        records = [
            r for r in records
            if (start is None or date.fromisoformat(r["updatedAt"][:10]) >= start)
            and (end is None or date.fromisoformat(r["updatedAt"][:10]) <= end)
        ]  # fmt: skip
    total = len(records)
    data = records[(page - 1) * per_page : page * per_page]
    result = {
        "data": data, "currentPage": page, "perPage": per_page, "total": total,
        "totalPages": math.ceil(total / per_page),
    }  # fmt: skip
    return web.json_response(
        {"status": 1, "message": "Data fetched successfully", "result": result}
    )


def _company(request: web.Request) -> RepCardCompany:
    return request.app[repcard_key]


async def list_users(request: web.Request) -> web.Response:
    return _listing(request, _company(request).visible("users"))


async def list_offices(request: web.Request) -> web.Response:
    return _listing(request, _company(request).visible("offices"))


async def list_customers(request: web.Request) -> web.Response:
    return _listing(request, _company(request).visible("customers"))


async def list_appointments(request: web.Request) -> web.Response:
    return _listing(request, _company(request).visible("appointments"))


async def list_customer_attachments(request: web.Request) -> web.Response:
    return _listing(request, _company(request).visible("customer_attachments"))


async def list_appointment_attachments(request: web.Request) -> web.Response:
    return _listing(request, _company(request).visible("appointment_attachments"))


def _customer_id(request: web.Request) -> int | None:
    raw = request.match_info["id"]
    return int(raw) if raw.isdigit() else None


async def get_customer(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Unauthenticated.")
    company, cid = _company(request), _customer_id(request)
    company.ensure()
    record = company.records["customers"].get(cid) if cid is not None else None
    if record is None:
        return _error(404, "Customer not found.")
    return web.json_response({"status": 1, "message": "ok", "result": record})


def _of_customer(request: web.Request, entity: str) -> list[dict[str, Any]]:
    return _company(request).of_parent(entity, "customerId", _customer_id(request))


async def customer_status_logs(request: web.Request) -> web.Response:
    return _listing(request, _of_customer(request, "status_logs"))


async def customer_attachments(request: web.Request) -> web.Response:
    return _listing(request, _of_customer(request, "customer_attachments"))


async def control_company(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    if body is None:
        return control_error(400, "body must be a JSON object")
    unknown = set(body) - {"seed", *ENTITIES}
    if unknown or not all(isinstance(v, int) and v >= 0 for v in body.values()):
        return control_error(422, f"expected non-negative integers for seed and {ENTITIES}")
    company = _company(request)
    company.seed = body.get("seed", 1)
    company.sizes = {name: body.get(name, DEFAULT_SIZES[name]) for name in ENTITIES}
    company.generate()
    return web.json_response(_counts(company))


def _counts(company: RepCardCompany) -> dict[str, int]:
    return {name: len(company.visible(name)) for name in ENTITIES}


async def control_counts(request: web.Request) -> web.Response:
    return web.json_response(_counts(_company(request)))


async def control_edit(request: web.Request) -> web.Response:
    entity, raw_id = request.match_info["entity"], request.match_info["id"]
    body = await read_json_object(request)
    if entity not in ENTITIES or not raw_id.isdigit() or body is None:
        return control_error(400, "unknown entity, bad id or body not a JSON object")
    record = _company(request).edit(entity, int(raw_id), body)
    if record is None:
        return control_error(404, f"no {entity} {raw_id}")
    return web.json_response(record)


async def control_add(request: web.Request) -> web.Response:
    entity, body = request.match_info["entity"], await read_json_object(request)
    if entity not in ENTITIES or body is None:
        return control_error(400, "unknown entity or body not a JSON object")
    return web.json_response(_company(request).add(entity, body), status=201)


async def control_hidden(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    entity = (body or {}).get("entity")
    ids = (body or {}).get("ids")
    if entity not in ENTITIES or not isinstance(ids, list):
        return control_error(422, "expected {entity, ids: [...], hidden: bool}")
    company = _company(request)
    company.ensure()
    if body and body.get("hidden", True):
        company.hidden[entity].update(int(i) for i in ids)
    else:
        company.hidden[entity].difference_update(int(i) for i in ids)
    company.changed()
    return web.json_response({"hidden": sorted(company.hidden[entity])})


def setup(app: web.Application) -> None:
    """Add the RepCard routes, their state and their fault body. Needs ``faults.setup``."""
    company = RepCardCompany()
    app[repcard_key] = company
    on_reset(app, company.reset)
    register_provider(app, "repcard", repcard_error_body)
    r = app.router
    r.add_get("/repcard/users/minimal", list_users)
    r.add_get("/repcard/offices", list_offices)
    # The static paths first: /customers/attachments is not customer "attachments".
    r.add_get("/repcard/customers/attachments", list_customer_attachments)
    r.add_get("/repcard/appointments/attachments", list_appointment_attachments)
    r.add_get("/repcard/customers", list_customers)
    r.add_get("/repcard/appointments", list_appointments)
    r.add_get("/repcard/customers/{id}", get_customer)
    r.add_get("/repcard/customers/{id}/status-logs", customer_status_logs)
    r.add_get("/repcard/customers/{id}/attachments", customer_attachments)
    r.add_post("/_sandbox/repcard/company", control_company)
    r.add_get("/_sandbox/repcard/counts", control_counts)
    r.add_post("/_sandbox/repcard/hidden", control_hidden)
    r.add_patch("/_sandbox/repcard/{entity}/{id}", control_edit)
    r.add_post("/_sandbox/repcard/{entity}", control_add)
