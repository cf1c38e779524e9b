"""The HubSpot sandbox's CRM v3 object routes (API.md §3, §4); list in :mod:`.hubspot`."""

from __future__ import annotations

from aiohttp import web

from services.sandbox.hubspot_api import (
    Batch,
    CreateIn,
    HubSpotError,
    ReadIn,
    WriteIn,
    batch_reply,
    check_size,
    input_error,
    object_type,
    parse,
    record_reply,
    unique_property,
    values,
)
from services.sandbox.hubspot_control import HubSpotState, hubspot_key
from services.sandbox.hubspot_objects import Failure, Record, iso_now, label_of
from services.sandbox.hubspot_search import SearchBody, SearchError, search

# Properties a read returns when it names none: contacts' defaults (API.md §3.5 is
# silent; HubSpot's UI-facing defaults [unverified]); other types, ids and dates only.
_DEFAULT_READ = {"0-1": ["email", "firstname", "lastname"]}
# A link the real API puts in ``paging.next`` (deprecated, API.md §5.3); ours is inert.
_NEXT_LINK = "?after={after}"


def _state(request: web.Request) -> HubSpotState:
    return request.app[hubspot_key]


def _associations(
    state: HubSpotState, item: CreateIn
) -> list[tuple[Record, set[tuple[str, int]]]] | Failure:
    """The records a create associates to; ids are unique across types in the sandbox,
    standing in for HubSpot inferring the type from ``associationTypeId`` (API.md §3.1)."""
    targets: list[tuple[Record, set[tuple[str, int]]]] = []
    for association in item.associations:
        target = state.store.locate(association.to.id)
        if target is None:
            message = f"No records found with ids ['{association.to.id}']"
            return Failure("VALIDATION_ERROR", message, [association.to.id])
        targets.append((target, {t.kind() for t in association.types}))
    return targets


def _create(state: HubSpotState, type_id: str, item: CreateIn) -> Record | Failure:
    targets = _associations(state, item)
    if isinstance(targets, Failure):
        return targets
    record = state.store.create(type_id, values(item.properties))
    if isinstance(record, Record):
        for target, kinds in targets:
            state.store.associate(type_id, record.id, target.type_id, target.id, kinds)
    return record


async def create_one(request: web.Request) -> web.Response:
    """``POST /crm/v3/objects/{objectType}`` -> 201 (API.md §3.1); 409 on a duplicate."""
    type_id = object_type(request)
    item = await parse(request, CreateIn)
    record = _create(_state(request), type_id, item)
    if isinstance(record, Failure):
        status = 409 if record.category == "CONFLICT" else 400
        raise HubSpotError(status, record.message, record.category)
    return web.json_response(record.to_json(), status=201)


async def batch_create(request: web.Request) -> web.Response:
    """``.../batch/create`` -> 201 / 207 (API.md §3.2). Without a unique trace id on every
    input, one failure fails the call (400, or 409 for a conflict) and creates nothing."""
    started, state, type_id = iso_now(), _state(request), object_type(request)
    batch = await parse(request, Batch[CreateIn])
    check_size(request, len(batch.inputs))
    traces = [item.objectWriteTraceId for item in batch.inputs]
    partial_ok = None not in traces and len(set(traces)) == len(traces)
    _refuse_whole(state, type_id, [(None, values(item.properties)) for item in batch.inputs])
    results, errors, created = [], [], list[Record]()
    for item in batch.inputs:
        record = _create(state, type_id, item)
        if isinstance(record, Failure):
            if not partial_ok:
                for done in created:
                    state.store.delete(done)
                status = 409 if record.category == "CONFLICT" else 400
                raise HubSpotError(status, record.message, record.category)
            errors.append(input_error(record, item.objectWriteTraceId))
        else:
            created.append(record)
            results.append(record_reply(record, item.objectWriteTraceId))
    body = batch_reply(results, errors, started)
    return web.json_response(body, status=207 if errors else 201)


def _find(state: HubSpotState, type_id: str, item: WriteIn) -> Record | None:
    if item.idProperty is None:
        return state.store.find(type_id, item.id)
    return state.store.find_by(type_id, item.idProperty, item.id)


def _refuse_whole(
    state: HubSpotState, type_id: str, writes: list[tuple[Record | None, dict[str, str]]]
) -> None:
    """400 for the whole call, nothing applied, when a ``wholeBatch`` rule matches one
    input (API.md §7 rule 6: a non-2xx fails the whole call; §2.4 the body)."""
    refused = state.store.batch_refusal(type_id, writes)
    if refused is not None:
        raise HubSpotError(400, refused.message, refused.category, {"ids": refused.ids})


def _no_duplicates(items: list[WriteIn]) -> None:
    keys = [(item.idProperty, item.id.casefold()) for item in items]
    if len(set(keys)) != len(keys):
        raise HubSpotError(400, "Duplicate IDs found in batch input")


async def batch_update(request: web.Request) -> web.Response:
    """``.../batch/update`` by record id or unique ``idProperty`` -> 200 / 207 (API.md §3.3)."""
    started, state, type_id = iso_now(), _state(request), object_type(request)
    batch = await parse(request, Batch[WriteIn])
    check_size(request, len(batch.inputs))
    for item in batch.inputs:
        if item.idProperty is not None:
            unique_property(state, type_id, item.idProperty)
    _no_duplicates(batch.inputs)
    _refuse_whole(
        state, type_id, [(_find(state, type_id, i), values(i.properties)) for i in batch.inputs]
    )
    results, errors = [], []
    for item in batch.inputs:
        record = _find(state, type_id, item)
        outcome: Record | Failure = (
            Failure("OBJECT_NOT_FOUND", f"Object not found. objectId: {item.id}")
            if record is None
            else state.store.update(record, values(item.properties))
        )
        if isinstance(outcome, Failure):
            errors.append(input_error(outcome, item.objectWriteTraceId, [item.id]))
        else:
            results.append(record_reply(outcome, item.objectWriteTraceId))
    return web.json_response(batch_reply(results, errors, started), status=207 if errors else 200)


async def batch_upsert(request: web.Request) -> web.Response:
    """``.../batch/upsert`` by a unique ``idProperty`` -> 200 / 207, results with ``new``
    (API.md §3.4, §4)."""
    started, state, type_id = iso_now(), _state(request), object_type(request)
    batch = await parse(request, Batch[WriteIn])
    check_size(request, len(batch.inputs))
    for item in batch.inputs:
        unique_property(state, type_id, item.idProperty)
    _no_duplicates(batch.inputs)
    _refuse_whole(state, type_id, [_upsert_write(state, type_id, i) for i in batch.inputs])
    results, errors = [], []
    for item in batch.inputs:
        prop, changes = item.idProperty or "", values(item.properties)
        record = state.store.find_by(type_id, prop, item.id)
        outcome = (
            state.store.create(type_id, {**changes, prop: item.id})
            if record is None
            else state.store.update(record, changes)
        )
        if isinstance(outcome, Failure):
            errors.append(input_error(outcome, item.objectWriteTraceId, [item.id]))
        else:
            results.append(record_reply(outcome, item.objectWriteTraceId, new=record is None))
    return web.json_response(batch_reply(results, errors, started), status=207 if errors else 200)


def _upsert_write(
    state: HubSpotState, type_id: str, item: WriteIn
) -> tuple[Record | None, dict[str, str]]:
    prop = item.idProperty or ""
    return state.store.find_by(type_id, prop, item.id), {**values(item.properties), prop: item.id}


async def batch_read(request: web.Request) -> web.Response:
    """``.../batch/read`` -> 200 / 207 with one ``OBJECT_NOT_FOUND`` error for the
    unknown ids (API.md §3.5); ``?archived=true`` finds nothing (none are archived)."""
    started, state, type_id = iso_now(), _state(request), object_type(request)
    body = await parse(request, ReadIn)
    check_size(request, len(body.inputs))
    prop = None if body.idProperty is None else unique_property(state, type_id, body.idProperty)
    names = body.properties or _DEFAULT_READ.get(type_id, [])
    archived = request.query.get("archived", "false").lower() == "true"
    results, missing = [], []
    for ref in body.inputs:
        found = None if archived else _lookup(state, type_id, prop, ref.id)
        if found is None:
            missing.append(ref.id)
        else:
            results.append(found.to_json(names))
    errors = []
    if missing:
        message = (
            f"Could not get some {label_of(type_id).upper()} objects, they may be deleted "
            "or not exist. Check that ids are valid."
        )
        errors.append(input_error(Failure("OBJECT_NOT_FOUND", message, missing)))
    return web.json_response(batch_reply(results, errors, started), status=207 if errors else 200)


def _lookup(state: HubSpotState, type_id: str, prop: str | None, value: str) -> Record | None:
    if prop is None:
        return state.store.find(type_id, value)
    return state.store.find_by(type_id, prop, value)


async def search_objects(request: web.Request) -> web.Response:
    """``.../search`` -> 200 ``{total, results, paging?}`` (API.md §3.6)."""
    state, type_id = _state(request), object_type(request)
    body = await parse(request, SearchBody)
    try:
        total, page, after = search(state.store.of_type(type_id).values(), body)
    except SearchError as exc:
        raise HubSpotError(400, str(exc)) from None
    names = body.properties or _DEFAULT_READ.get(type_id, [])
    reply: dict[str, object] = {"total": total, "results": [r.to_json(names) for r in page]}
    if after is not None:
        reply["paging"] = {"next": {"after": after, "link": _NEXT_LINK.format(after=after)}}
    return web.json_response(reply)


def add_routes(app: web.Application) -> None:
    objects = "/hubspot/crm/v3/objects/{objectType}"
    app.router.add_post(objects, create_one)
    app.router.add_post(f"{objects}/batch/create", batch_create)
    app.router.add_post(f"{objects}/batch/update", batch_update)
    app.router.add_post(f"{objects}/batch/upsert", batch_upsert)
    app.router.add_post(f"{objects}/batch/read", batch_read)
    app.router.add_post(f"{objects}/search", search_objects)
