"""HubSpotClient: batch writes and their 207s, 429 policies, errors, pacing, values."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import aiohttp
import pytest
from aiolimiter import AsyncLimiter
from aioresponses import aioresponses
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs
from yarl import URL

from shared.clients import hubspot as hubspot_module
from shared.clients import hubspot_policy
from shared.clients.http import ProviderResponse
from shared.clients.hubspot import (
    AssociationInput,
    AssociationSpec,
    BatchCreateInput,
    BatchResult,
    BatchUpdateInput,
    BatchUpsertInput,
    Filter,
    FilterGroup,
    HubSpotClient,
    HubSpotObject,
    ObjectAssociation,
    classify_hubspot,
    rolling_window_limiter,
    to_property_value,
)
from shared.errors import ProviderRejectedError, ProviderUnavailableError, QuotaExhaustedError
from shared.settings import ProviderSettings

BASE = "https://api.hubapi.test"
TOKEN = "pat-na1-test-token"
CONTACTS = f"{BASE}/crm/v3/objects/contacts"
CREATE = f"{CONTACTS}/batch/create"
UPDATE = f"{CONTACTS}/batch/update"
UPSERT = f"{CONTACTS}/batch/upsert"
READ = f"{CONTACTS}/batch/read?archived=false"
SEARCH = f"{CONTACTS}/search"
ASSOCIATE = f"{BASE}/crm/v4/associations/2-1001/contacts/batch/create"
DEFAULT = f"{BASE}/crm/v4/associations/2-1001/contacts/batch/associate/default"
TEN_SECONDLY = {
    "status": "error",
    "message": "You have reached your ten_secondly_rolling limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "3f0c8a52-1111-4d2e-9c1e-000000000002",
    "policyName": "TEN_SECONDLY_ROLLING",
}


def record(record_id: str, trace: str | None = None, **properties: str) -> dict:
    body = {
        "id": record_id,
        "properties": properties,
        "createdAt": "2025-01-05T10:00:00Z",
        "updatedAt": "2025-01-05T10:00:00Z",
        "archived": False,
    }
    return body | ({"objectWriteTraceId": trace} if trace else {})


def batch(results: list[dict], errors: list[dict] | None = None) -> dict:
    body = {"status": "COMPLETE", "results": results, "startedAt": "x", "completedAt": "y"}
    return body | ({"errors": errors, "numErrors": len(errors)} if errors else {})


def error(category: str, **context: list[str]) -> dict:
    return {"status": "error", "category": category, "message": "no", "context": context}


def create_input(trace: str, email: str) -> BatchCreateInput:
    return BatchCreateInput(properties={"email": email}, object_write_trace_id=trace)


def sent(mock_http: aioresponses, url: str, method: str = "POST") -> list:
    return mock_http.requests.get((method, URL(url)), [])


@pytest.fixture
def hubspot(session: aiohttp.ClientSession, limiter: AsyncLimiter, monkeypatch) -> HubSpotClient:
    monkeypatch.setattr(hubspot_module, "BACKOFF_BASE_S", 0.01)
    return HubSpotClient(session, base_url=BASE + "/", access_token=TOKEN, limiter=limiter)


async def test_batch_create_sends_each_input_with_its_trace_id_and_the_bearer_token(
    mock_http, hubspot
):
    mock_http.post(CREATE, status=201, payload=batch([record("1", "row-1", email="a@x.test")]))
    association = ObjectAssociation(
        to_id="555",
        types=[AssociationSpec(association_category="USER_DEFINED", association_type_id=37)],
    )
    item = BatchCreateInput(
        properties={"email": "a@x.test"}, object_write_trace_id="row-1", associations=[association]
    )

    result = await hubspot.batch_create("contacts", [item])

    (call,) = sent(mock_http, CREATE)
    assert call.kwargs["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    assert call.kwargs["json"] == {
        "inputs": [
            {
                "properties": {"email": "a@x.test"},
                "associations": [
                    {
                        "to": {"id": "555"},
                        "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 37}],
                    }
                ],
                "objectWriteTraceId": "row-1",
            }
        ]
    }
    (outcome,) = result.outcomes([item])
    assert outcome.ok and outcome.result is not None and outcome.result.id == "1"


async def test_a_207_maps_results_and_errors_to_inputs_by_trace_id_not_by_position(
    mock_http, hubspot
):
    inputs = [create_input(f"row-{n}", f"{n}@x.test") for n in (1, 2, 3)]
    # Results and errors in another order than the inputs.
    body = batch(
        [record("93", "row-3"), record("91", "row-1")],
        [error("CONFLICT", objectWriteTraceId=["row-2"])],
    )
    mock_http.post(CREATE, status=207, payload=body)

    result = await hubspot.batch_create("contacts", inputs)

    outcomes = result.outcomes(inputs)
    assert [(o.ok, o.result and o.result.id) for o in outcomes] == [
        (True, "91"),
        (False, None),
        (True, "93"),
    ]
    assert outcomes[1].error is not None and outcomes[1].error.category == "CONFLICT"
    assert result.failed_trace_ids(inputs) == {"row-2"}


async def test_a_207_maps_errors_to_inputs_by_the_ids_in_their_context(mock_http, hubspot):
    inputs = [
        BatchUpdateInput(id="17", properties={"sj_credits": "1"}),
        BatchUpdateInput(id="18", properties={"sj_credits": "2"}, object_write_trace_id="17"),
        BatchUpdateInput(id="19", properties={"sj_credits": "3"}),
    ]
    body = batch(
        [record("19"), record("18", "17")],
        [error("OBJECT_NOT_FOUND", ids=["17"])],  # an id, not the trace id "17"
    )
    mock_http.post(UPDATE, status=207, payload=body)

    result = await hubspot.batch_update("contacts", inputs)

    assert [o.ok for o in result.outcomes(inputs)] == [False, True, True]
    assert result.outcomes(inputs)[0].error.category == "OBJECT_NOT_FOUND"  # type: ignore[union-attr]


async def test_an_error_naming_no_input_fails_every_input_missing_from_the_results(
    mock_http, hubspot
):
    inputs = [create_input(f"row-{n}", f"{n}@x.test") for n in (1, 2, 3)]
    body = batch([record("92", "row-2")], [error("VALIDATION_ERROR", propertyName=["email"])])
    mock_http.post(CREATE, status=207, payload=body)

    result = await hubspot.batch_create("contacts", inputs)

    outcomes = result.outcomes(inputs)
    assert [o.ok for o in outcomes] == [False, True, False]
    assert outcomes[0].error is not None and outcomes[0].error.category == "VALIDATION_ERROR"
    assert result.failed_trace_ids(inputs) == {"row-1", "row-3"}


async def test_a_reply_without_errors_means_every_input_succeeded_even_unmatched(
    mock_http, hubspot
):
    inputs = [create_input("row-1", "a@x.test"), create_input("row-2", "b@x.test")]
    mock_http.post(CREATE, status=201, payload=batch([record("1"), record("2")]))

    result = await hubspot.batch_create("contacts", inputs)

    assert [(o.ok, o.result) for o in result.outcomes(inputs)] == [(True, None), (True, None)]
    assert result.failed_trace_ids(inputs) == set()


async def test_upsert_results_match_their_inputs_by_unique_value_ignoring_email_case(
    mock_http, hubspot
):
    inputs = [
        BatchUpsertInput(id="Ada@X.test", id_property="email", properties={"sj_credits": "3"}),
        BatchUpsertInput(id="bob@x.test", id_property="email", properties={"sj_credits": "4"}),
    ]
    body = batch(
        [
            record("2", email="bob@x.test") | {"new": True},
            record("1", email="ada@x.test") | {"new": False},
        ],
        [],
    )
    mock_http.post(UPSERT, payload=body)

    result = await hubspot.batch_upsert("contacts", inputs)

    (call,) = sent(mock_http, UPSERT)
    assert call.kwargs["json"]["inputs"][0] == {
        "id": "Ada@X.test",
        "idProperty": "email",
        "properties": {"sj_credits": "3"},
    }
    outcomes = result.outcomes(inputs)
    assert [(o.result.id, o.result.new) for o in outcomes] == [("1", False), ("2", True)]  # type: ignore[union-attr]


async def test_batch_read_by_unique_property_asks_for_it_and_matches_by_it(mock_http, hubspot):
    body = batch(
        [record("7", booking_ref="BKG-2")],
        [error("OBJECT_NOT_FOUND", ids=["BKG-1"])],
    )
    mock_http.post(
        f"{BASE}/crm/v3/objects/2-1001/batch/read?archived=false", status=207, payload=body
    )

    result = await hubspot.batch_read("2-1001", ["BKG-1", "BKG-2"], ["status"], "booking_ref")

    call = sent(mock_http, f"{BASE}/crm/v3/objects/2-1001/batch/read?archived=false")[0]
    assert call.kwargs["json"] == {
        "inputs": [{"id": "BKG-1"}, {"id": "BKG-2"}],
        "properties": ["status", "booking_ref"],
        "propertiesWithHistory": [],
        "idProperty": "booking_ref",
    }
    outcomes = result.outcomes(["BKG-1", "BKG-2"])
    assert [(o.ok, o.result and o.result.id) for o in outcomes] == [(False, None), (True, "7")]


async def test_read_results_drop_properties_hubspot_answers_as_null(mock_http, hubspot):
    mock_http.post(
        READ,
        payload=batch(
            [
                record("5", email="a@x.test")
                | {"properties": {"email": "a@x.test", "firstname": None}}
            ]
        ),
    )

    result = await hubspot.batch_read("contacts", ["5"], ["email", "firstname"])

    assert result.results[0].properties == {"email": "a@x.test"}


async def test_associations_map_back_by_from_and_to_ids(mock_http, hubspot):
    kind = AssociationSpec(association_category="USER_DEFINED", association_type_id=37)
    inputs = [
        AssociationInput(from_id="555", to_id="1", types=[kind]),
        AssociationInput(from_id="556", to_id="2", types=[kind]),
    ]
    labels = {
        "fromObjectTypeId": "2-1001",
        "fromObjectId": 555,  # numbers on the wire are accepted (API.md §5.3)
        "toObjectTypeId": "0-1",
        "toObjectId": "1",
        "labels": [],
    }
    mock_http.post(ASSOCIATE, status=207, payload=batch([labels], [error("X", ids=["556"])]))

    result = await hubspot.batch_associate_labels("2-1001", "contacts", inputs)

    assert sent(mock_http, ASSOCIATE)[0].kwargs["json"]["inputs"][1] == {
        "from": {"id": "556"},
        "to": {"id": "2"},
        "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 37}],
    }
    assert [o.ok for o in result.outcomes(inputs)] == [True, False]


async def test_default_associations_read_errors_from_a_200(mock_http, hubspot):
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}
    ok = {"from": {"id": "555"}, "to": {"id": "1"}, "associationSpec": spec}
    mock_http.post(DEFAULT, payload=batch([ok], [error("OBJECT_NOT_FOUND", ids=["9"])]))
    pairs = [("555", "1"), ("556", "9")]

    result = await hubspot.batch_associate_default("2-1001", "contacts", pairs)

    assert sent(mock_http, DEFAULT)[0].kwargs["json"] == {
        "inputs": [
            {"from": {"id": "555"}, "to": {"id": "1"}},
            {"from": {"id": "556"}, "to": {"id": "9"}},
        ]
    }
    assert [o.ok for o in result.outcomes(pairs)] == [True, False]
    assert result.results[0].association_spec == AssociationSpec(
        association_category="HUBSPOT_DEFINED", association_type_id=1
    )


async def test_search_sends_filters_and_returns_the_next_cursor(mock_http, hubspot):
    mock_http.post(
        SEARCH, payload={"total": 3, "results": [record("1")], "paging": {"next": {"after": "1"}}}
    )
    groups = [
        FilterGroup(filters=[Filter(property_name="email", operator="IN", values=["a@x.test"])])
    ]

    page = await hubspot.search("contacts", groups, ["email"], limit=1, after="0")

    assert sent(mock_http, SEARCH)[0].kwargs["json"] == {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "IN", "values": ["a@x.test"]}]}
        ],
        "properties": ["email"],
        "limit": 1,
        "after": "0",
    }
    assert (page.total, [r.id for r in page.results], page.after) == (3, ["1"], "1")


async def test_the_last_search_page_has_no_cursor(mock_http, hubspot):
    mock_http.post(SEARCH, payload={"total": 1, "results": [record("1")]})

    page = await hubspot.search("contacts", [], ["email"])

    assert page.after is None


@pytest.mark.parametrize("limit", [0, 201])
async def test_a_search_limit_outside_1_to_200_is_refused(hubspot, limit):
    with pytest.raises(ValueError, match="1-200"):
        await hubspot.search("contacts", [], [], limit=limit)


async def test_search_is_paced_by_its_own_limiter(session, mock_http):
    client = HubSpotClient(
        session,
        base_url=BASE,
        access_token=TOKEN,
        limiter=AsyncLimiter(1000, 1),
        search_limiter=AsyncLimiter(1, 0.2),
    )
    mock_http.post(SEARCH, payload={"total": 0, "results": []}, repeat=True)
    mock_http.post(UPDATE, payload=batch([]), repeat=True)

    started = time.monotonic()
    for _ in range(3):
        await client.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])
    updates_s = time.monotonic() - started
    for _ in range(3):
        await client.search("contacts", [], [])
    searches_s = time.monotonic() - started - updates_s

    assert updates_s < 0.2
    assert searches_s >= 0.35


async def test_a_ten_secondly_429_waits_for_retry_after_then_succeeds(mock_http, hubspot):
    mock_http.post(UPDATE, status=429, payload=TEN_SECONDLY, headers={"Retry-After": "0.05"})
    mock_http.post(UPDATE, payload=batch([record("1")]))

    started = time.monotonic()
    result = await hubspot.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    assert time.monotonic() - started >= 0.05
    assert [r.id for r in result.results] == ["1"]
    assert len(sent(mock_http, UPDATE)) == 2


def test_a_ten_secondly_429_without_retry_after_waits_ten_seconds():
    failure = classify_hubspot("hubspot", ProviderResponse(429, TEN_SECONDLY, "{}", None))

    assert isinstance(failure, ProviderUnavailableError)
    assert failure.retry_after_s == 10.0
    assert "TEN_SECONDLY_ROLLING" in str(failure)


async def test_a_ten_secondly_429_without_retry_after_is_retried_after_the_window(
    mock_http, hubspot, monkeypatch
):
    monkeypatch.setattr(hubspot_policy, "TEN_SECONDLY_WAIT_S", 0.05)
    mock_http.post(UPDATE, status=429, payload=TEN_SECONDLY)
    mock_http.post(UPDATE, payload=batch([record("1")]))

    started = time.monotonic()
    await hubspot.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    assert time.monotonic() - started >= 0.05
    assert len(sent(mock_http, UPDATE)) == 2


@pytest.mark.parametrize(
    ("body", "wait_s"),
    [
        ({"policyName": "SECONDLY"}, 1.0),
        ({"message": "You have reached your secondly limit."}, 1.0),
        ({"policyName": "SOMETHING_NEW"}, None),
        ({}, None),
    ],
)
def test_other_429s_wait_a_second_or_back_off(body, wait_s):
    failure = classify_hubspot("hubspot", ProviderResponse(429, body, "{}", None))

    assert isinstance(failure, ProviderUnavailableError)
    assert failure.retry_after_s == wait_s


async def test_a_daily_429_raises_quota_exhausted_without_retrying(mock_http, hubspot):
    body = TEN_SECONDLY | {"policyName": "DAILY", "message": "You have reached your daily limit."}
    mock_http.post(UPDATE, status=429, payload=body, headers={"Retry-After": "1"}, repeat=True)

    with pytest.raises(QuotaExhaustedError) as caught:
        await hubspot.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    assert caught.value.status == 429
    assert "daily" in str(caught.value)
    assert len(sent(mock_http, UPDATE)) == 1


async def test_5xx_is_retried_then_raised_as_unavailable(mock_http, hubspot):
    body = {
        "status": "error",
        "message": "oops",
        "correlationId": "c-5",
        "category": "INTERNAL_ERROR",
    }
    mock_http.post(UPDATE, status=502, payload=body, repeat=True)

    with capture_logs() as logs, pytest.raises(ProviderUnavailableError) as caught:
        await hubspot.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    assert caught.value.status == 502
    assert len(sent(mock_http, UPDATE)) == 4  # max_tries
    failures = [entry for entry in logs if entry["event"] == "hubspot.request_failed"]
    assert len(failures) == 4
    assert failures[0]["correlation_id"] == "c-5"


async def test_a_5xx_then_success_returns_the_result(mock_http, hubspot):
    mock_http.post(UPDATE, status=503)
    mock_http.post(UPDATE, payload=batch([record("1")]))

    result = await hubspot.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    assert [r.id for r in result.results] == ["1"]


@pytest.mark.parametrize(
    ("status", "category", "words"),
    [
        (401, "INVALID_AUTHENTICATION", "access token"),
        (403, "MISSING_SCOPES", "crm.objects.contacts.write"),
        (400, "VALIDATION_ERROR", "VALIDATION_ERROR"),
        (404, "OBJECT_NOT_FOUND", "OBJECT_NOT_FOUND"),
        (409, "CONFLICT", "CONFLICT"),
        (414, "", "HTTP 414"),
    ],
)
async def test_client_errors_are_permanent_name_the_cause_and_carry_the_correlation_id(
    mock_http, hubspot, status, category, words
):
    body = {
        "status": "error",
        "message": "nope",
        "correlationId": "c-42",
        "category": category,
        "context": {"missingScopes": ["crm.objects.contacts.write"]},
    }
    mock_http.post(UPDATE, status=status, payload=body, repeat=True)

    with pytest.raises(ProviderRejectedError) as caught:
        await hubspot.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    assert caught.value.status == status
    assert words in str(caught.value)
    assert "c-42" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(sent(mock_http, UPDATE)) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.batch_create("contacts", [create_input(f"r{n}", "a") for n in range(101)]),
        lambda c: c.batch_update(
            "contacts", [BatchUpdateInput(id=str(n), properties={}) for n in range(101)]
        ),
        lambda c: c.batch_upsert(
            "contacts",
            [BatchUpsertInput(id=str(n), id_property="email", properties={}) for n in range(101)],
        ),
        lambda c: c.batch_read("contacts", [str(n) for n in range(101)], []),
        lambda c: c.batch_associate_labels(
            "2-1001",
            "contacts",
            [
                AssociationInput(
                    from_id=str(n),
                    to_id="1",
                    types=[
                        AssociationSpec(association_category="USER_DEFINED", association_type_id=1)
                    ],
                )
                for n in range(101)
            ],
        ),
        lambda c: c.batch_associate_default(
            "2-1001", "contacts", [(str(n), "1") for n in range(101)]
        ),
    ],
)
async def test_more_than_100_inputs_raise_value_error_before_any_request(mock_http, hubspot, call):
    with pytest.raises(ValueError, match="at most 100"):
        await call(hubspot)

    assert mock_http.requests == {}


async def test_repeated_trace_ids_in_one_batch_raise_value_error(hubspot):
    with pytest.raises(ValueError, match="objectWriteTraceId must be unique"):
        await hubspot.batch_create("contacts", [create_input("r", "a"), create_input("r", "b")])


def test_a_create_input_needs_a_trace_id():
    with pytest.raises(ValidationError):
        BatchCreateInput(properties={"email": "a"})  # type: ignore[call-arg]


def test_property_values_must_be_strings():
    with pytest.raises(ValidationError):
        BatchUpdateInput(id="1", properties={"sj_credits": 3})  # type: ignore[dict-item]


async def test_an_empty_batch_sends_nothing(mock_http, hubspot):
    result = await hubspot.batch_create("contacts", [])

    assert result == BatchResult[HubSpotObject]()
    assert mock_http.requests == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("x", "x"),
        (True, "true"),
        (False, "false"),
        (12, "12"),
        (12.0, "12"),
        (12.5, "12.5"),
        (1e-7, "0.0000001"),
        (Decimal("12.50"), "12.5"),
        (Decimal("3"), "3"),
        (datetime(2025, 1, 5, 10, 0, tzinfo=UTC), "1736071200000"),
        (datetime(2025, 1, 5, 10, 0), "1736071200000"),
        (date(2025, 1, 5), "2025-01-05"),
    ],
)
def test_property_values_convert_to_hubspot_strings(value, expected):
    assert to_property_value(value) == expected


@pytest.mark.parametrize(("value", "error"), [(float("nan"), ValueError), ([1], TypeError)])
def test_values_without_a_hubspot_form_are_refused(value, error):
    with pytest.raises(error):
        to_property_value(value)


async def test_rolling_window_limiter_never_exceeds_its_budget_in_any_window():
    limiter = rolling_window_limiter(20, 0.2)
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def take() -> None:
        async with limiter:
            starts.append(loop.time())

    await asyncio.gather(*(take() for _ in range(50)))

    busiest = max(sum(1 for t in starts if s <= t < s + 0.2) for s in starts)
    assert busiest <= 20
    # And not much slower than the budget: 49 more starts at 19 per 0.2 s take 0.52 s.
    assert 0.5 <= starts[-1] - starts[0] < 1.0


def test_a_budget_below_two_per_window_spaces_requests_a_window_apart():
    limiter = rolling_window_limiter(0.5, 1.0)

    assert (limiter.max_rate, limiter.time_period) == (1, 2.0)


async def test_from_settings_shares_the_budget_between_replicas(session, mock_http):
    settings = ProviderSettings(
        _env_file=None,
        hubspot_base_url="http://sandbox.test/hubspot",
        hubspot_access_token=SecretStr("from-settings"),
        hubspot_rate_per_10s=190,
        hubspot_replicas=2,
    )
    client = HubSpotClient.from_settings(session, settings)
    url = "http://sandbox.test/hubspot/crm/v3/objects/contacts/batch/update"
    mock_http.post(url, payload=batch([]))

    await client.batch_update("contacts", [BatchUpdateInput(id="1", properties={})])

    (call,) = sent(mock_http, url)
    assert call.kwargs["headers"] == {"Authorization": "Bearer from-settings"}
    # 95 per 10 s each: a burst of 4, then 91 per 10 s.
    limiter = client._http._limiter
    assert (limiter.max_rate, limiter.time_period) == (4, pytest.approx(40 / 91))
