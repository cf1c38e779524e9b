"""HubSpot CRM client: batch writes, reads, search and associations (reference/hubspot).

Built on :class:`~shared.clients.http.ProviderHttp`. Every call sends
``Authorization: Bearer <private-app token>`` (API.md §1). Batches hold at most 100
inputs (LIMITS.md §3, design W4); a 207 is a :class:`BatchResult` with per-input
outcomes, not an exception (API.md §7). Errors (API.md §8, §9):

- 400, 401, 403, 404, 409, 414 -> :class:`ProviderRejectedError` (never retried);
- 429 ``policyName: DAILY`` -> :class:`QuotaExhaustedError` at once (LIMITS.md §5);
- other 429s, 5xx, timeouts -> retried, then :class:`ProviderUnavailableError`.

HubSpot's ``correlationId`` is logged with every failure (API.md §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from pydantic import BaseModel

from shared.budget import metered_rolling
from shared.clients.http import ProviderHttp, validate_reply
from shared.clients.hubspot_batch import BatchInput, BatchResult, InputOutcome
from shared.clients.hubspot_models import (
    AssociationCategory,
    AssociationInput,
    AssociationResult,
    AssociationSpec,
    BatchCreateInput,
    BatchError,
    BatchUpdateInput,
    BatchUpsertInput,
    Filter,
    FilterGroup,
    FilterOperator,
    HubSpotObject,
    ObjectAssociation,
    SearchPage,
    to_property_value,
)
from shared.clients.hubspot_policy import (
    TEN_SECONDLY_WAIT_S,
    classify_hubspot,
    rolling_window_limiter,
)
from shared.settings import ProviderSettings

__all__ = [
    "AssociationCategory",
    "AssociationInput",
    "AssociationResult",
    "AssociationSpec",
    "BatchCreateInput",
    "BatchError",
    "BatchInput",
    "BatchResult",
    "BatchUpdateInput",
    "BatchUpsertInput",
    "Filter",
    "FilterGroup",
    "FilterOperator",
    "HubSpotClient",
    "HubSpotObject",
    "InputOutcome",
    "ObjectAssociation",
    "SearchPage",
    "classify_hubspot",
    "rolling_window_limiter",
    "to_property_value",
]

log = structlog.get_logger(__name__)

PROVIDER = "hubspot"
# Inputs per batch call: LIMITS.md §3 (HubSpot's spec declares no maxItems), design W4.
MAX_BATCH_INPUTS = 100
# Largest search page (API.md §3.6, LIMITS.md §2).
MAX_SEARCH_LIMIT = 200
# Search has its own limit, 4 requests/s per token, apart from the 10 s one (LIMITS.md §2).
SEARCH_RATE_PER_S = 4.0
# First backoff ceiling for 5xx / unknown 429s: "exponential backoff from 1 s" (API.md §9).
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 8.0
# A longer Retry-After is raised for the caller to re-queue; one 10 s window is slept.
MAX_INLINE_WAIT_S = TEN_SECONDLY_WAIT_S

M = TypeVar("M", bound=BaseModel)
B = TypeVar("B", BatchResult[HubSpotObject], BatchResult[AssociationResult])


class HubSpotClient:
    """HubSpot CRM v3 objects and v4 associations for one private app.

    Args:
        session: the shared ``aiohttp.ClientSession``; its owner closes it.
        base_url: ``https://api.hubapi.com`` (API.md §1) or the sandbox's ``.../hubspot``.
        access_token: the private app's token, sent as ``Authorization: Bearer``; never logged.
        limiter: paces every call but search (the app's 10 s budget, LIMITS.md §1); see
            :func:`rolling_window_limiter`.
        search_limiter: paces search (4/s per token, LIMITS.md §2); by default
            ``rolling_window_limiter(4, 1)``.
        timeout_s: seconds per try.
        max_tries: tries per call, the first included.

    Every call raises :class:`ProviderRejectedError`, :class:`ProviderUnavailableError` or
    :class:`QuotaExhaustedError` as the module docstring says, and ``ValueError`` before
    sending anything when a batch has more than 100 inputs or repeats a record or an
    ``objectWriteTraceId``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        access_token: str,
        limiter: AsyncLimiter,
        search_limiter: AsyncLimiter | None = None,
        timeout_s: float = 10.0,
        max_tries: int = 4,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}"}
        search_limiter = search_limiter or rolling_window_limiter(SEARCH_RATE_PER_S, 1.0)
        self._http = self._provider_http(session, limiter, timeout_s, max_tries)
        self._search_http = self._provider_http(session, search_limiter, timeout_s, max_tries)

    @staticmethod
    def _provider_http(
        session: aiohttp.ClientSession, limiter: AsyncLimiter, timeout_s: float, max_tries: int
    ) -> ProviderHttp:
        return ProviderHttp(
            session,
            provider=PROVIDER,
            limiter=limiter,
            classify=classify_hubspot,
            timeout_s=timeout_s,
            max_tries=max_tries,
            base_wait_s=BACKOFF_BASE_S,
            max_wait_s=BACKOFF_MAX_S,
            max_inline_wait_s=MAX_INLINE_WAIT_S,
        )

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: ProviderSettings
    ) -> HubSpotClient:
        """A client for ``CRMSYNC_HUBSPOT_*``; build one per process.

        The app's budgets are per app, not per process, so each of ``hubspot_replicas``
        replicas takes an equal share: ``hubspot_rate_per_10s / replicas`` per rolling
        10 s, and ``4 / replicas`` searches per second (LIMITS.md §1, §2).
        """
        replicas = max(1, settings.hubspot_replicas)
        return cls(
            session,
            base_url=settings.hubspot_base_url,
            access_token=settings.hubspot_access_token.get_secret_value(),
            limiter=metered_rolling("hubspot", settings.hubspot_rate_per_10s / replicas, 10.0),
            search_limiter=metered_rolling("hubspot_search", SEARCH_RATE_PER_S / replicas, 1.0),
            timeout_s=settings.http_timeout_s,
        )

    async def batch_create(
        self, object_type: str, inputs: Sequence[BatchCreateInput]
    ) -> BatchResult[HubSpotObject]:
        """``POST /crm/v3/objects/{objectType}/batch/create`` -> 201, or 207 when some
        inputs failed (API.md §3.2, §4). Each input's unique ``objectWriteTraceId`` makes
        partial success possible and maps results back (API.md §7 rule 3).

        A create retried after a timeout or 5xx may have been applied already and then
        duplicates the record (API.md §7 rule 5); prefer :meth:`batch_upsert` when the
        object has a unique property.
        """
        _check_batch(inputs, traces=[i.object_write_trace_id for i in inputs])
        path = f"/crm/v3/objects/{_seg(object_type)}/batch/create"
        return await self._batch(BatchResult[HubSpotObject], path, _wire(inputs))

    async def batch_update(
        self, object_type: str, inputs: Sequence[BatchUpdateInput]
    ) -> BatchResult[HubSpotObject]:
        """``POST /crm/v3/objects/{objectType}/batch/update`` by record id -> 200 / 207
        (API.md §3.3; ``""`` clears a value).
        """
        traces = [i.object_write_trace_id for i in inputs if i.object_write_trace_id]
        _check_batch(inputs, traces=traces, ids=[i.id for i in inputs])
        path = f"/crm/v3/objects/{_seg(object_type)}/batch/update"
        return await self._batch(BatchResult[HubSpotObject], path, _wire(inputs))

    async def batch_upsert(
        self, object_type: str, inputs: Sequence[BatchUpsertInput]
    ) -> BatchResult[HubSpotObject]:
        """``POST /crm/v3/objects/{objectType}/batch/upsert`` -> 200 / 207 (API.md §3.4,
        §4): create or update by a unique property; results carry ``new``. Safe to retry.
        """
        traces = [i.object_write_trace_id for i in inputs if i.object_write_trace_id]
        # HubSpot matches emails without case (hubspot_batch._same_value).
        keys = [
            (i.id_property, i.id.casefold() if i.id_property == "email" else i.id) for i in inputs
        ]
        _check_batch(inputs, traces=traces, ids=keys)
        path = f"/crm/v3/objects/{_seg(object_type)}/batch/upsert"
        return await self._batch(BatchResult[HubSpotObject], path, _wire(inputs))

    async def batch_read(
        self,
        object_type: str,
        ids: Sequence[str],
        properties: Sequence[str],
        id_property: str | None = None,
    ) -> BatchResult[HubSpotObject]:
        """``POST /crm/v3/objects/{objectType}/batch/read`` -> 200 / 207 (API.md §3.5).

        Args:
            ids: record ids, or values of the unique property ``id_property``.
            properties: names to return; ``id_property`` is added so results can be
                matched to ``ids`` (:meth:`BatchResult.outcomes`).

        Unknown ids come back as errors (``OBJECT_NOT_FOUND``, ids in ``context``).
        """
        _check_batch(ids)
        if not ids:
            return BatchResult[HubSpotObject](id_property=id_property)
        names = list(dict.fromkeys([*properties, *([id_property] if id_property else [])]))
        body: dict[str, Any] = {
            "inputs": [{"id": i} for i in ids],
            "properties": names,
            "propertiesWithHistory": [],
        }
        if id_property:
            body["idProperty"] = id_property
        path = f"/crm/v3/objects/{_seg(object_type)}/batch/read"
        result = await self._post(BatchResult[HubSpotObject], path, body, {"archived": "false"})
        return result.model_copy(update={"id_property": id_property})

    async def search(
        self,
        object_type: str,
        filter_groups: Sequence[FilterGroup],
        properties: Sequence[str],
        limit: int = 100,
        after: str | None = None,
    ) -> SearchPage:
        """``POST /crm/v3/objects/{objectType}/search`` -> one page (API.md §3.6), paced by
        the search limiter. Pass ``page.after`` back for the next page.

        Raises:
            ValueError: ``limit`` outside 1-200.
        """
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise ValueError(f"HubSpot search limit is 1-{MAX_SEARCH_LIMIT}, got {limit}")
        body: dict[str, Any] = {
            "filterGroups": [g.to_wire() for g in filter_groups],
            "properties": list(properties),
            "limit": limit,
        }
        if after is not None:
            body["after"] = after
        path = f"/crm/v3/objects/{_seg(object_type)}/search"
        return await self._post(SearchPage, path, body, http=self._search_http)

    async def batch_associate_labels(
        self, from_type: str, to_type: str, inputs: Sequence[AssociationInput]
    ) -> BatchResult[AssociationResult]:
        """``POST /crm/v4/associations/{from}/{to}/batch/create`` -> 201 / 207 (API.md §5.2).
        Creating an association that exists is harmless, so a retry is safe.
        """
        _check_batch(inputs)
        path = f"/crm/v4/associations/{_seg(from_type)}/{_seg(to_type)}/batch/create"
        return await self._batch(BatchResult[AssociationResult], path, _wire(inputs))

    async def batch_associate_default(
        self, from_type: str, to_type: str, pairs: Sequence[tuple[str, str]]
    ) -> BatchResult[AssociationResult]:
        """``POST /crm/v4/associations/{from}/{to}/batch/associate/default`` with
        ``(from_id, to_id)`` pairs -> 200 (API.md §5.1). The 200 body may still carry
        ``errors``: check :meth:`BatchResult.outcomes`.
        """
        _check_batch(pairs)
        path = f"/crm/v4/associations/{_seg(from_type)}/{_seg(to_type)}/batch/associate/default"
        wire = [{"from": {"id": f}, "to": {"id": t}} for f, t in pairs]
        return await self._batch(BatchResult[AssociationResult], path, wire)

    async def _batch(self, model: type[B], path: str, inputs: list[dict[str, Any]]) -> B:
        if not inputs:
            return model()
        result = await self._post(model, path, {"inputs": inputs})
        if result.errors:
            log.warning(
                "hubspot.batch_partial",
                path=path,
                inputs=len(inputs),
                errors=len(result.errors),
                categories=sorted({e.category for e in result.errors}),
            )
        return result

    async def _post(
        self,
        model: type[M],
        path: str,
        body: dict[str, Any],
        params: dict[str, str] | None = None,
        *,
        http: ProviderHttp | None = None,
    ) -> M:
        response = await (http or self._http).request(
            "POST", self._base_url + path, json_body=body, params=params, headers=self._headers
        )
        return validate_reply(PROVIDER, model, response.data, response)


def _wire(
    inputs: Sequence[BatchCreateInput | BatchUpdateInput | BatchUpsertInput | AssociationInput],
) -> list[dict[str, Any]]:
    return [item.to_wire() for item in inputs]


def _seg(value: str) -> str:
    """One URL path segment (object type ids like ``2-1001`` pass unchanged)."""
    return quote(value, safe="")


def _check_batch(
    inputs: Sequence[object], *, traces: Sequence[str] = (), ids: Sequence[object] = ()
) -> None:
    if len(inputs) > MAX_BATCH_INPUTS:
        raise ValueError(
            f"HubSpot batches take at most {MAX_BATCH_INPUTS} inputs, got {len(inputs)}"
        )
    if len(set(traces)) != len(traces):
        raise ValueError("objectWriteTraceId must be unique within a batch (API.md §7 rule 3)")
    if len(set(ids)) != len(ids):
        raise ValueError("the same record appears twice in one batch")
