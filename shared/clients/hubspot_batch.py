"""A HubSpot batch reply and what became of each input (reference/hubspot/API.md §2.3, §7).

A reply never maps to its inputs by position (API.md §7 rule 2: order is spec silent).
:meth:`BatchResult.outcomes` matches results through ``objectWriteTraceId``, record ids
and unique values, and errors through the trace ids / ids their ``context`` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from shared.clients.hubspot_models import (
    CAMEL,
    AssociationInput,
    AssociationResult,
    BatchCreateInput,
    BatchError,
    BatchUpdateInput,
    BatchUpsertInput,
    HubSpotObject,
)

BatchInput = (
    BatchCreateInput
    | BatchUpdateInput
    | BatchUpsertInput
    | AssociationInput
    | str
    | tuple[str, str]
)
R = TypeVar("R", HubSpotObject, AssociationResult)
I = TypeVar("I", bound=BatchInput)  # noqa: E741 (the conventional name of an input type)


@dataclass(frozen=True)
class InputOutcome(Generic[I, R]):
    """What became of one batch input.

    Attributes:
        input: the input, as given to :meth:`BatchResult.outcomes`.
        ok: True when HubSpot applied it.
        result: the matching result; None when none matched (ok then means HubSpot
            reported no failure in the whole call but echoed nothing to match by).
        error: the error naming this input, or else one naming no input; None when
            the input is simply missing from the results (API.md §7 rule 2b).
    """

    input: I
    ok: bool
    result: R | None = None
    error: BatchError | None = None


class BatchResult(BaseModel, Generic[R]):
    """A batch reply (API.md §2.2 / §2.3): 200/201 and 207 alike, never an exception.

    ``id_property`` is the unique property a :meth:`HubSpotClient.batch_read` looked ids
    up by (None: record ids); :meth:`outcomes` needs it to match read results.
    """

    model_config = CAMEL

    status: str = "COMPLETE"
    results: list[R] = Field(default_factory=list)
    errors: list[BatchError] = Field(default_factory=list)
    num_errors: int | None = None
    id_property: str | None = None

    def outcomes(self, inputs: Sequence[I]) -> list[InputOutcome[I, R]]:
        """One outcome per input, in input order (API.md §7 rules 1-2).

        An input succeeded when a result matches it (same ``objectWriteTraceId``; same
        record id; for upserts and reads by unique property, the same unique value; the
        same from/to pair for associations), or when the reply has no errors at all. It
        failed when an error's ``context`` names its trace id or id, or, failing that,
        because the reply has errors and no result matches it.
        """
        unnamed = [e for e in self.errors if not any(_names(e, item) for item in inputs)]
        # Results by trace id: a batch of 100 is matched in one pass, not 100 scans.
        by_trace: dict[str, R] = {}
        for r in self.results:
            if isinstance(r, HubSpotObject) and r.object_write_trace_id is not None:
                by_trace.setdefault(r.object_write_trace_id, r)
        outcomes: list[InputOutcome[I, R]] = []
        for item in inputs:
            trace = _trace_id(item)
            result = by_trace.get(trace) if trace is not None else None
            if result is None:
                result = next((r for r in self.results if self._matches(item, r)), None)
            error = next((e for e in self.errors if _names(e, item)), None)
            if result is not None or (error is None and not self.errors):
                outcomes.append(InputOutcome(item, True, result))
            else:
                outcomes.append(InputOutcome(item, False, None, error or next(iter(unnamed), None)))
        return outcomes

    def failed_trace_ids(self, inputs: Sequence[I]) -> set[str]:
        """The ``objectWriteTraceId`` of every input that failed (inputs without one are
        not listed: use :meth:`outcomes` for those)."""
        return {
            trace
            for outcome in self.outcomes(inputs)
            if not outcome.ok and (trace := _trace_id(outcome.input)) is not None
        }

    def _matches(self, item: BatchInput, result: HubSpotObject | AssociationResult) -> bool:
        if isinstance(result, AssociationResult):
            pair = (item.from_id, item.to_id) if isinstance(item, AssociationInput) else item
            return pair == (result.from_id, result.to_id)
        trace = _trace_id(item)
        if trace is not None and result.object_write_trace_id is not None:
            return trace == result.object_write_trace_id
        if isinstance(item, BatchUpsertInput):
            return _same_value(item.id_property, item.id, result.properties.get(item.id_property))
        if isinstance(item, str) and self.id_property is not None:
            found = result.properties.get(self.id_property)
            return _same_value(self.id_property, item, found)
        return isinstance(item, str | BatchUpdateInput) and _ids(item) == {result.id}


def _trace_id(item: BatchInput) -> str | None:
    if isinstance(item, BatchCreateInput | BatchUpdateInput | BatchUpsertInput):
        return item.object_write_trace_id
    return None


def _ids(item: BatchInput) -> set[str]:
    if isinstance(item, str):
        return {item}
    if isinstance(item, tuple):
        return set(item)
    if isinstance(item, AssociationInput):
        return {item.from_id, item.to_id}
    if isinstance(item, BatchUpdateInput | BatchUpsertInput):
        return {item.id}
    return set()


def _names(error: BatchError, item: BatchInput) -> bool:
    """Whether ``error.context`` names ``item``: trace-id keys are compared with its trace
    id, id keys (``ids``, ``fromObjectId``, ...) with its ids, other keys with both."""
    trace, ids = _trace_id(item), _ids(item)
    for key, values in error.context.items():
        lowered = key.lower()
        if "trace" in lowered:
            wanted = {trace} if trace else set()
        elif lowered.endswith(("id", "ids")):
            wanted = ids
        else:
            wanted = ids | ({trace} if trace else set())
        if wanted.intersection(values):
            return True
    return False


def _same_value(id_property: str, wanted: str, found: str | None) -> bool:
    # HubSpot stores contact emails in lower case and matches them without case.
    if found is None:
        return False
    return wanted.casefold() == found.casefold() if id_property == "email" else wanted == found
