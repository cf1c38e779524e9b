"""The HubSpot sandbox's v4 association routes (API.md §5); list in :mod:`.hubspot`.

Pairs are stored once per direction given; reads and the control API see them from
either side. Labels are not modelled: ``labels`` is always ``[]`` (API.md §5.2 expects
empty lists for unlabelled types [unverified]).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, StrictStr

from services.sandbox.hubspot_api import (
    AssociationType,
    Batch,
    In,
    Ref,
    batch_reply,
    check_size,
    input_error,
    object_type,
    parse,
)
from services.sandbox.hubspot_control import hubspot_key
from services.sandbox.hubspot_objects import DEFAULT_TYPE, Failure, iso_now

# Associations batch read takes up to 1000 ids (LIMITS.md §3, changelog 2025-02-10).
MAX_READ_INPUTS = 1000


class PairIn(In):
    from_: Ref = Field(alias="from")
    to: Ref
    types: list[AssociationType] = Field(default_factory=list)


class ReadPairIn(In):
    id: StrictStr
    after: StrictStr | None = None


def _ends(request: web.Request) -> tuple[str, str]:
    return object_type(request, "fromObjectType"), object_type(request, "toObjectType")


async def _associate(
    request: web.Request, *, labelled: bool
) -> tuple[list[tuple[PairIn, set[tuple[str, int]]]], list[dict[str, Any]], str]:
    started = iso_now()
    store = request.app[hubspot_key].store
    from_type, to_type = _ends(request)
    batch = await parse(request, Batch[PairIn])
    check_size(request, len(batch.inputs))
    done, errors = [], []
    for item in batch.inputs:
        kinds = {t.kind() for t in item.types} if labelled else {DEFAULT_TYPE}
        failure = (
            Failure("VALIDATION_ERROR", "types must not be empty")
            if labelled and not item.types
            else store.associate(from_type, item.from_.id, to_type, item.to.id, kinds)
        )
        if failure is None:
            done.append((item, kinds))
        else:
            errors.append(input_error(failure))
    return done, errors, started


async def associate_labels(request: web.Request) -> web.Response:
    """``POST .../batch/create`` -> 201 / 207 of ``LabelsBetweenObjectPair`` (API.md §5.2)."""
    from_type, to_type = _ends(request)
    done, errors, started = await _associate(request, labelled=True)
    results = [
        {
            "fromObjectTypeId": from_type,
            "fromObjectId": item.from_.id,
            "toObjectTypeId": to_type,
            "toObjectId": item.to.id,
            "labels": [],
        }
        for item, _ in done
    ]
    return web.json_response(batch_reply(results, errors, started), status=207 if errors else 201)


async def associate_default(request: web.Request) -> web.Response:
    """``POST .../batch/associate/default`` -> 200, errors in the body (API.md §5.1)."""
    done, errors, started = await _associate(request, labelled=False)
    category, type_id = DEFAULT_TYPE
    spec = {"associationCategory": category, "associationTypeId": type_id}
    results = [
        {"from": {"id": item.from_.id}, "to": {"id": item.to.id}, "associationSpec": spec}
        for item, _ in done
    ]
    return web.json_response(batch_reply(results, errors, started))


async def read_associations(request: web.Request) -> web.Response:
    """``POST .../batch/read`` -> 200 / 207 (API.md §5.3): one result per from-record with
    associations (all on one page, no ``paging``); a from-id with none is left out; an
    unknown from-id is an ``OBJECT_NOT_FOUND`` error."""
    started = iso_now()
    store = request.app[hubspot_key].store
    from_type, to_type = _ends(request)
    batch = await parse(request, Batch[ReadPairIn])
    check_size(request, len(batch.inputs), MAX_READ_INPUTS)
    pairs = store.pairs(from_type, to_type)
    results, missing = [], []
    for item in batch.inputs:
        if store.find(from_type, item.id) is None:
            missing.append(item.id)
            continue
        to = [
            {
                "toObjectId": to_id,
                "associationTypes": [
                    {"category": c, "typeId": t, "label": None} for c, t in sorted(kinds)
                ],
            }
            for (from_id, to_id), kinds in sorted(pairs.items())
            if from_id == item.id
        ]
        if to:
            results.append({"from": {"id": item.id}, "to": to})
    errors = []
    if missing:
        message = f"No records found with ids {missing}"
        errors.append(input_error(Failure("OBJECT_NOT_FOUND", message, missing)))
    return web.json_response(batch_reply(results, errors, started), status=207 if errors else 200)


def add_routes(app: web.Application) -> None:
    pairs = "/hubspot/crm/v4/associations/{fromObjectType}/{toObjectType}/batch"
    app.router.add_post(f"{pairs}/create", associate_labels)
    app.router.add_post(f"{pairs}/associate/default", associate_default)
    app.router.add_post(f"{pairs}/read", read_associations)
