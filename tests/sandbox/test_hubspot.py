"""The sandbox's HubSpot API, driven by the real HubSpotClient (and raw calls for shapes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiolimiter import AsyncLimiter
from pydantic import SecretStr

from services.sandbox import create_app
from shared.clients.hubspot import (
    AssociationInput,
    AssociationSpec,
    BatchCreateInput,
    BatchUpdateInput,
    BatchUpsertInput,
    Filter,
    FilterGroup,
    HubSpotClient,
    ObjectAssociation,
    rolling_window_limiter,
)
from shared.errors import ProviderRejectedError, ProviderUnavailableError, QuotaExhaustedError
from shared.settings import ProviderSettings

TOKEN = "test-hubspot-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SETTINGS = ProviderSettings(
    _env_file=None,
    hubspot_access_token=SecretStr(TOKEN),
    hubspot_booking_object_type="2-1001",
    hubspot_mock_exam_object_type="2-1002",
)
BOOKINGS, EXAMS = "2-1001", "2-1002"
LABEL = AssociationSpec(association_category="USER_DEFINED", association_type_id=37)
Client = TestClient[Any, Any]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(SETTINGS))) as test_client:
        yield test_client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http_session:
        yield http_session


def make_hubspot(client: Client, session: aiohttp.ClientSession, **options: Any) -> HubSpotClient:
    # Generous unless a test is about pacing.
    options.setdefault("limiter", AsyncLimiter(1000, 1))
    options.setdefault("search_limiter", AsyncLimiter(1000, 1))
    return HubSpotClient(
        session, base_url=str(client.make_url("/hubspot")), access_token=TOKEN, **options
    )


@pytest.fixture
def hubspot(client: Client, session: aiohttp.ClientSession) -> HubSpotClient:
    return make_hubspot(client, session)


def contact(trace: str, email: str, **properties: str) -> BatchCreateInput:
    return BatchCreateInput(properties={"email": email, **properties}, object_write_trace_id=trace)


async def control(client: Client, method: str, path: str, body: Any = None) -> Any:
    resp = await client.request(method, f"/_sandbox/hubspot{path}", json=body)
    assert resp.status < 300, await resp.text()
    return await resp.json()


async def records(client: Client, object_type: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = (await control(client, "GET", f"/objects/{object_type}"))[
        "results"
    ]
    return answer


async def test_batch_create_then_read_round_trips_properties(hubspot, client):
    inputs = [contact("row-1", "Ada@Example.test", sj_credits="3"), contact("row-2", "bob@x.test")]

    created = await hubspot.batch_create("contacts", inputs)
    ids = [o.result.id for o in created.outcomes(inputs)]  # type: ignore[union-attr]
    read = await hubspot.batch_read("contacts", ids, ["email", "sj_credits"])

    assert [o.ok for o in created.outcomes(inputs)] == [True, True]
    assert [r.object_write_trace_id for r in created.results] == ["row-1", "row-2"]
    by_id = {r.id: r.properties for r in read.results}
    assert by_id[ids[0]]["email"] == "ada@example.test"  # HubSpot keeps emails in lower case
    assert by_id[ids[0]]["sj_credits"] == "3"
    assert "sj_credits" not in by_id[ids[1]]  # requested but unset: null on the wire
    assert by_id[ids[0]]["hs_object_id"] == ids[0]
    stored = await records(client, "0-1")
    assert [r["id"] for r in stored] == ids
    assert stored[0]["createdAt"].endswith("Z") and stored[0]["archived"] is False


async def test_batch_update_changes_the_given_properties_and_an_empty_string_clears(
    hubspot, client
):
    created = await hubspot.batch_create("contacts", [contact("r", "a@x.test", firstname="Ada")])
    record_id = created.results[0].id

    result = await hubspot.batch_update(
        "contacts",
        [BatchUpdateInput(id=record_id, properties={"sj_credits": "4", "firstname": ""})],
    )

    assert result.errors == []
    stored = await control(client, "GET", f"/objects/contacts/{record_id}")
    assert stored["properties"]["sj_credits"] == "4"
    assert "firstname" not in stored["properties"]
    assert stored["properties"]["email"] == "a@x.test"
    assert stored["updatedAt"] >= stored["createdAt"]


async def test_batch_update_of_an_unknown_id_fails_only_that_input(hubspot):
    created = await hubspot.batch_create("contacts", [contact("r", "a@x.test")])
    inputs = [
        BatchUpdateInput(id="999999", properties={"sj_credits": "1"}),
        BatchUpdateInput(id=created.results[0].id, properties={"sj_credits": "2"}),
    ]

    result = await hubspot.batch_update("contacts", inputs)

    outcomes = result.outcomes(inputs)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error.category == "OBJECT_NOT_FOUND"  # type: ignore[union-attr]


async def test_batch_upsert_creates_then_updates_by_email_and_says_which(hubspot, client):
    first = [BatchUpsertInput(id="ada@x.test", id_property="email", properties={"sj_credits": "1"})]
    again = [
        BatchUpsertInput(id="ADA@x.test", id_property="email", properties={"sj_credits": "2"}),
        BatchUpsertInput(id="bob@x.test", id_property="email", properties={"sj_credits": "5"}),
    ]

    created = await hubspot.batch_upsert("contacts", first)
    updated = await hubspot.batch_upsert("contacts", again)

    assert [r.new for r in created.results] == [True]
    outcomes = updated.outcomes(again)
    assert [(o.result.id, o.result.new) for o in outcomes] == [  # type: ignore[union-attr]
        (created.results[0].id, False),
        (outcomes[1].result.id, True),  # type: ignore[union-attr]
    ]
    stored = {r["properties"]["email"]: r["properties"] for r in await records(client, "contacts")}
    assert stored["ada@x.test"]["sj_credits"] == "2"
    assert stored["bob@x.test"]["sj_credits"] == "5"


async def test_custom_objects_upsert_by_their_default_unique_property(hubspot, client):
    inputs = [
        BatchUpsertInput(id="BKG-1", id_property="booking_ref", properties={"status": "booked"}),
        BatchUpsertInput(id="BKG-2", id_property="booking_ref", properties={"status": "booked"}),
    ]
    exam = [BatchUpsertInput(id="EX-1", id_property="exam_ref", properties={"total_bookings": "2"})]

    await hubspot.batch_upsert(BOOKINGS, inputs)
    again = await hubspot.batch_upsert(
        BOOKINGS,
        [
            BatchUpsertInput(
                id="BKG-1", id_property="booking_ref", properties={"status": "cancelled"}
            )
        ],
    )
    await hubspot.batch_upsert(EXAMS, exam)

    assert [r.new for r in again.results] == [False]
    bookings = {r["properties"]["booking_ref"]: r for r in await records(client, BOOKINGS)}
    assert bookings["BKG-1"]["properties"]["status"] == "cancelled"
    assert len(bookings) == 2
    assert (await records(client, EXAMS))[0]["properties"]["exam_ref"] == "EX-1"


async def test_upsert_by_a_property_that_is_not_unique_is_refused(hubspot):
    inputs = [BatchUpsertInput(id="x", id_property="status", properties={})]

    with pytest.raises(ProviderRejectedError, match="non-unique") as caught:
        await hubspot.batch_upsert(BOOKINGS, inputs)

    assert caught.value.status == 400


async def test_unique_properties_are_configurable_per_object_type(hubspot, client):
    await control(
        client, "POST", "/unique-properties", {"objectType": BOOKINGS, "properties": ["code"]}
    )

    await hubspot.batch_upsert(
        BOOKINGS, [BatchUpsertInput(id="C-1", id_property="code", properties={})]
    )
    with pytest.raises(ProviderRejectedError):
        await hubspot.batch_upsert(
            BOOKINGS, [BatchUpsertInput(id="B", id_property="booking_ref", properties={})]
        )

    assert (await control(client, "GET", "/unique-properties"))[BOOKINGS] == ["code"]


async def test_batch_read_reports_unknown_ids_as_one_not_found_error(hubspot):
    created = await hubspot.batch_create("contacts", [contact("r", "a@x.test")])
    ids = ["424242", created.results[0].id, "434343"]

    result = await hubspot.batch_read("contacts", ids, ["email"])

    (error,) = result.errors
    assert error.category == "OBJECT_NOT_FOUND"
    assert error.context["ids"] == ["424242", "434343"]
    assert [o.ok for o in result.outcomes(ids)] == [False, True, False]


async def test_batch_read_by_email_finds_records_by_their_unique_value(hubspot):
    await hubspot.batch_create("contacts", [contact("r", "a@x.test", sj_credits="7")])

    result = await hubspot.batch_read("contacts", ["A@x.test"], ["sj_credits"], "email")

    (outcome,) = result.outcomes(["A@x.test"])
    assert outcome.ok and outcome.result is not None
    assert outcome.result.properties["sj_credits"] == "7"


async def test_a_duplicate_email_is_refused_alone_and_in_a_batch(hubspot, client):
    await hubspot.batch_create("contacts", [contact("r1", "ada@x.test")])
    inputs = [contact("r2", "bob@x.test"), contact("r3", "ADA@x.test")]

    single = await client.post(
        "/hubspot/crm/v3/objects/contacts",
        json={"properties": {"email": "ada@x.test"}, "associations": []},
        headers=AUTH,
    )
    result = await hubspot.batch_create("contacts", inputs)

    assert single.status == 409
    body = await single.json()
    assert body["category"] == "CONFLICT" and body["correlationId"]
    assert "Existing ID" in body["message"]
    assert result.failed_trace_ids(inputs) == {"r3"}
    assert result.outcomes(inputs)[1].error.category == "CONFLICT"  # type: ignore[union-attr]
    assert sorted(r["properties"]["email"] for r in await records(client, "contacts")) == [
        "ada@x.test",
        "bob@x.test",
    ]


async def test_a_batch_create_without_trace_ids_fails_whole_and_creates_nothing(hubspot, client):
    await hubspot.batch_create("contacts", [contact("r1", "ada@x.test")])
    inputs = [{"properties": {"email": "new@x.test"}}, {"properties": {"email": "ada@x.test"}}]

    resp = await client.post(
        "/hubspot/crm/v3/objects/contacts/batch/create", json={"inputs": inputs}, headers=AUTH
    )

    assert resp.status == 409
    assert len(await records(client, "contacts")) == 1


async def test_injected_failures_answer_207_naming_the_inputs(hubspot, client):
    rule = {
        "objectType": "contacts",
        "match": {"property": "email", "values": ["bad@x.test", "worse@x.test"]},
        "category": "VALIDATION_ERROR",
        "message": "Property values were not valid",
    }
    await control(client, "POST", "/fail-records", rule)
    inputs = [
        contact("r1", "ok@x.test"),
        contact("r2", "BAD@x.test"),
        contact("r3", "worse@x.test"),
    ]

    result = await hubspot.batch_create("contacts", inputs)

    assert result.failed_trace_ids(inputs) == {"r2", "r3"}
    assert {tuple(e.context["objectWriteTraceId"]) for e in result.errors} == {("r2",), ("r3",)}
    assert [r["properties"]["email"] for r in await records(client, "contacts")] == ["ok@x.test"]
    (listed,) = (await control(client, "GET", "/fail-records"))["rules"]
    assert listed["hits"] == 2


async def test_injected_failures_apply_to_updates_by_the_record_s_properties(hubspot, client):
    created = await hubspot.batch_create(
        "contacts", [contact("r1", "a@x.test"), contact("r2", "b@x.test")]
    )
    rule = {"objectType": "0-1", "match": {"property": "email", "values": ["b@x.test"]}, "count": 1}
    await control(client, "POST", "/fail-records", rule)
    inputs = [BatchUpdateInput(id=r.id, properties={"sj_credits": "9"}) for r in created.results]

    first = await hubspot.batch_update("contacts", inputs)
    second = await hubspot.batch_update("contacts", inputs)

    assert [o.ok for o in first.outcomes(inputs)] == [True, False]
    assert first.errors[0].context["ids"] == [created.results[1].id]
    assert [o.ok for o in second.outcomes(inputs)] == [True, True]  # count 1: spent


async def test_a_whole_batch_rule_refuses_the_call_with_a_400_and_applies_nothing(hubspot, client):
    await hubspot.batch_create("contacts", [contact("r0", "kept@x.test", sj_credits="1")])
    rule = {
        "objectType": "contacts",
        "match": {"property": "email", "values": ["bad@x.test"]},
        "wholeBatch": True,
    }
    await control(client, "POST", "/fail-records", rule)
    inputs = [
        BatchUpsertInput(id=email, id_property="email", properties={"sj_credits": "7"})
        for email in ("kept@x.test", "new@x.test", "BAD@x.test")
    ]

    with pytest.raises(ProviderRejectedError) as refused:
        await hubspot.batch_upsert("contacts", inputs)

    assert refused.value.status == 400
    assert "VALIDATION_ERROR" in str(refused.value) and "bad@x.test" in refused.value.body
    stored = await records(client, "contacts")
    assert [(r["properties"]["email"], r["properties"]["sj_credits"]) for r in stored] == [
        ("kept@x.test", "1")
    ]
    # Without the bad input the same batch goes through.
    result = await hubspot.batch_upsert("contacts", inputs[:2])
    assert [o.ok for o in result.outcomes(inputs[:2])] == [True, True]
    (listed,) = (await control(client, "GET", "/fail-records"))["rules"]
    assert (listed["hits"], listed["wholeBatch"]) == (1, True)


async def test_search_filters_sorts_and_pages(hubspot):
    inputs = [
        contact(f"r{n}", f"{n}@x.test", sj_credits=str(n), firstname=name)
        for n, name in enumerate(["Ada", "Bob", "Cy", "Di", "Ed"], start=1)
    ]
    await hubspot.batch_create("contacts", inputs)

    async def emails(*filters: Filter, **kwargs: Any) -> list[str]:
        groups = [FilterGroup(filters=list(filters))] if filters else []
        page = await hubspot.search("contacts", groups, ["email"], **kwargs)
        return [r.properties["email"] for r in page.results]

    assert await emails(Filter(property_name="sj_credits", operator="GT", value="3")) == [
        "4@x.test",
        "5@x.test",
    ]
    assert await emails(Filter(property_name="sj_credits", operator="LTE", value="2")) == [
        "1@x.test",
        "2@x.test",
    ]
    assert await emails(Filter(property_name="firstname", operator="EQ", value="cy")) == [
        "3@x.test"
    ]
    assert await emails(
        Filter(property_name="email", operator="IN", values=["2@x.test", "5@x.test"])
    ) == ["2@x.test", "5@x.test"]
    assert await emails(
        Filter(property_name="sj_credits", operator="GTE", value="2"),
        Filter(property_name="sj_credits", operator="LT", value="4"),
    ) == ["2@x.test", "3@x.test"]
    assert await emails(Filter(property_name="lastname", operator="HAS_PROPERTY")) == []
    assert len(await emails(Filter(property_name="lastname", operator="NOT_HAS_PROPERTY"))) == 5
    first = await hubspot.search("contacts", [], ["email"], limit=2)
    second = await hubspot.search("contacts", [], ["email"], limit=2, after=first.after)
    last = await hubspot.search("contacts", [], ["email"], limit=2, after=second.after)
    assert (first.total, first.after, second.after, last.after) == (5, "2", "4", None)
    assert [r.properties["email"] for r in last.results] == ["5@x.test"]


async def test_filter_groups_are_ored(hubspot):
    await hubspot.batch_create(
        "contacts", [contact(f"r{n}", f"{n}@x.test", sj_credits=str(n)) for n in range(3)]
    )
    groups = [
        FilterGroup(filters=[Filter(property_name="sj_credits", operator="EQ", value="0")]),
        FilterGroup(filters=[Filter(property_name="sj_credits", operator="EQ", value="2")]),
    ]

    page = await hubspot.search("contacts", groups, ["sj_credits"])

    assert [r.properties["sj_credits"] for r in page.results] == ["0", "2"]


async def test_a_search_page_over_200_is_a_400(client):
    resp = await client.post(
        "/hubspot/crm/v3/objects/contacts/search", json={"limit": 201}, headers=AUTH
    )

    assert resp.status == 400
    assert (await resp.json())["category"] == "VALIDATION_ERROR"


async def test_batches_over_100_inputs_are_a_400_validation_error(client):
    inputs = [
        {"properties": {"email": f"{n}@x.test"}, "objectWriteTraceId": str(n)} for n in range(101)
    ]

    resp = await client.post(
        "/hubspot/crm/v3/objects/contacts/batch/create", json={"inputs": inputs}, headers=AUTH
    )

    assert resp.status == 400
    body = await resp.json()
    assert (body["status"], body["category"]) == ("error", "VALIDATION_ERROR")


async def test_non_string_property_values_are_a_400(client):
    resp = await client.post(
        "/hubspot/crm/v3/objects/contacts",
        json={"properties": {"sj_credits": 3}, "associations": []},
        headers=AUTH,
    )

    assert resp.status == 400


async def test_an_unknown_object_type_is_a_400(client):
    resp = await client.post(
        "/hubspot/crm/v3/objects/bookings/batch/read", json={"inputs": []}, headers=AUTH
    )

    assert resp.status == 400
    assert "Unable to infer object type" in (await resp.json())["message"]


async def test_creating_an_association_twice_is_harmless(hubspot, client):
    people = await hubspot.batch_create("contacts", [contact("c", "a@x.test")])
    booking = await hubspot.batch_upsert(
        BOOKINGS, [BatchUpsertInput(id="BKG-1", id_property="booking_ref", properties={})]
    )
    pair = AssociationInput(
        from_id=booking.results[0].id, to_id=people.results[0].id, types=[LABEL]
    )

    first = await hubspot.batch_associate_labels(BOOKINGS, "contacts", [pair])
    second = await hubspot.batch_associate_labels(BOOKINGS, "contacts", [pair])
    default = await hubspot.batch_associate_default(
        BOOKINGS, "contacts", [(pair.from_id, pair.to_id)]
    )

    assert [o.ok for o in (*first.outcomes([pair]), *second.outcomes([pair]))] == [True, True]
    assert default.errors == []
    listed = (await control(client, "GET", f"/associations/{BOOKINGS}/contacts"))["results"]
    assert [(a["fromId"], a["toId"]) for a in listed] == [(pair.from_id, pair.to_id)]
    assert {t["associationTypeId"] for t in listed[0]["types"]} == {1, 37}
    reverse = (await control(client, "GET", f"/associations/0-1/{BOOKINGS}"))["results"]
    assert [(a["fromId"], a["toId"]) for a in reverse] == [(pair.to_id, pair.from_id)]


async def test_associating_a_missing_record_fails_that_pair_only(hubspot):
    people = await hubspot.batch_create("contacts", [contact("c", "a@x.test")])
    exam = await hubspot.batch_upsert(
        EXAMS, [BatchUpsertInput(id="EX-1", id_property="exam_ref", properties={})]
    )
    pairs = [(exam.results[0].id, people.results[0].id), (exam.results[0].id, "777777")]

    result = await hubspot.batch_associate_default(EXAMS, "contacts", pairs)

    assert [o.ok for o in result.outcomes(pairs)] == [True, False]
    assert result.errors[0].context["ids"] == ["777777"]


async def test_a_create_with_associations_stores_them(hubspot, client):
    people = await hubspot.batch_create("contacts", [contact("c", "a@x.test")])
    booking = BatchCreateInput(
        properties={"booking_ref": "BKG-9"},
        object_write_trace_id="b-9",
        associations=[ObjectAssociation(to_id=people.results[0].id, types=[LABEL])],
    )

    created = await hubspot.batch_create(BOOKINGS, [booking])

    listed = (await control(client, "GET", f"/associations/{BOOKINGS}/contacts"))["results"]
    assert [(a["fromId"], a["toId"]) for a in listed] == [
        (created.results[0].id, people.results[0].id)
    ]
    read = await client.post(
        f"/hubspot/crm/v4/associations/{BOOKINGS}/contacts/batch/read",
        json={"inputs": [{"id": created.results[0].id}]},
        headers=AUTH,
    )
    (result,) = (await read.json())["results"]
    assert result["to"][0]["toObjectId"] == people.results[0].id
    assert result["to"][0]["associationTypes"][0]["typeId"] == 37


async def test_a_request_without_the_token_gets_hubspot_s_401(client):
    resp = await client.post(
        "/hubspot/crm/v3/objects/contacts/batch/read",
        json={"inputs": []},
        headers={"Authorization": "Bearer wrong"},
    )

    assert resp.status == 401
    body = await resp.json()
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["status"] == "error" and body["correlationId"]


async def test_the_rate_limit_answers_hubspot_s_429_body_and_headers(client):
    await control(
        client,
        "POST",
        "/rate-limit",
        {"requests": 2, "window_s": 10, "policy": "TEN_SECONDLY_ROLLING"},
    )
    url, body = "/hubspot/crm/v3/objects/contacts/batch/read", {"inputs": []}

    answers = [await client.post(url, json=body, headers=AUTH) for _ in range(3)]
    search = await client.post("/hubspot/crm/v3/objects/contacts/search", json={}, headers=AUTH)

    assert [a.status for a in answers] == [200, 200, 429]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "2"
    assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    refused = await answers[2].json()
    assert refused == refused | {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    assert refused["correlationId"]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 10
    assert search.status == 200  # search is exempt from the ten-secondly window
    stats = await control(client, "GET", "/stats")
    assert stats["rate_limited"] == 1
    assert stats["rate_limited_by_policy"] == {"TEN_SECONDLY_ROLLING": 1}
    log = await (await client.get("/_sandbox/requests?provider=hubspot")).json()
    assert [r["status"] for r in log["requests"]] == [200, 200, 429, 200]


async def test_without_a_rate_limit_responses_still_carry_the_headers(client):
    resp = await client.post(
        "/hubspot/crm/v3/objects/contacts/batch/read", json={"inputs": []}, headers=AUTH
    )

    assert resp.headers["X-HubSpot-RateLimit-Max"] == "190"
    assert resp.headers["X-HubSpot-RateLimit-Remaining"] == "189"


async def test_the_daily_cap_makes_the_client_raise_quota_exhausted(hubspot, client):
    await control(client, "POST", "/rate-limit", {"requests": 1, "policy": "DAILY"})

    await hubspot.batch_read("contacts", ["1"], [])
    with pytest.raises(QuotaExhaustedError):
        await hubspot.batch_read("contacts", ["1"], [])

    stats = await control(client, "GET", "/stats")
    assert stats["rate_limited_by_policy"] == {"DAILY": 1}  # not retried


async def test_a_rolling_429_is_retried_by_the_client_after_retry_after(hubspot, client):
    await control(
        client, "POST", "/rate-limit", {"requests": 1, "window_s": 0.5, "policy": "SECONDLY"}
    )

    started = time.monotonic()
    await hubspot.batch_read("contacts", ["1"], [])
    await hubspot.batch_read("contacts", ["1"], [])

    assert time.monotonic() - started >= 1.0  # Retry-After: 1 (whole seconds)
    assert (await control(client, "GET", "/stats"))["rate_limited"] == 1


async def test_a_client_paced_under_the_window_gets_almost_no_429s(client, session):
    await control(
        client,
        "POST",
        "/rate-limit",
        {"requests": 10, "window_s": 1.0, "policy": "TEN_SECONDLY_ROLLING"},
    )
    hubspot = make_hubspot(client, session, limiter=rolling_window_limiter(10, 1.0))

    started = time.monotonic()
    await asyncio.gather(*(hubspot.batch_read("contacts", [str(n)], []) for n in range(30)))
    elapsed_s = time.monotonic() - started

    stats = await control(client, "GET", "/stats")
    assert stats["rate_limited"] <= 1
    assert stats["calls"]["POST /crm/v3/objects/contacts/batch/read"] == 30 + stats["rate_limited"]
    assert 2.5 <= elapsed_s < 5.0


async def test_generic_faults_reach_hubspot_and_the_client_retries_a_503(
    client, session, monkeypatch
):
    from shared.clients import hubspot as hubspot_module

    monkeypatch.setattr(hubspot_module, "BACKOFF_BASE_S", 0.01)
    retrying = make_hubspot(client, session)
    fault = {"provider": "hubspot", "status": 503, "count": 1, "path": "batch/read"}
    assert (await client.post("/_sandbox/faults", json=fault)).status == 201

    result = await retrying.batch_read("contacts", ["1"], [])

    assert result.errors[0].category == "OBJECT_NOT_FOUND"
    log = await (await client.get("/_sandbox/requests?provider=hubspot")).json()
    assert [(r["status"], r["fault"]) for r in log["requests"]] == [(503, True), (207, False)]


async def test_a_503_that_persists_is_raised_as_unavailable(client, session, monkeypatch):
    from shared.clients import hubspot as hubspot_module

    monkeypatch.setattr(hubspot_module, "BACKOFF_BASE_S", 0.01)
    hubspot = make_hubspot(client, session, max_tries=2)
    await client.post("/_sandbox/faults", json={"provider": "hubspot", "status": 503})

    with pytest.raises(ProviderUnavailableError):
        await hubspot.batch_read("contacts", ["1"], [])


async def test_stats_count_calls_and_batch_sizes(hubspot, client):
    await hubspot.batch_create("contacts", [contact(f"r{n}", f"{n}@x.test") for n in range(3)])
    await hubspot.batch_create("contacts", [contact("r9", "9@x.test")])

    stats = await control(client, "GET", "/stats")

    key = "POST /crm/v3/objects/contacts/batch/create"
    assert stats["calls"][key] == 2
    assert stats["batch_sizes"][key] == [3, 1]


@pytest.mark.parametrize("reset_path", ["/_sandbox/reset", "/_sandbox/hubspot/reset"])
async def test_reset_forgets_records_rules_limits_and_stats(hubspot, client, reset_path):
    await hubspot.batch_create("contacts", [contact("r", "a@x.test")])
    await control(client, "POST", "/rate-limit", {"requests": 1, "policy": "DAILY"})
    await control(
        client,
        "POST",
        "/fail-records",
        {"objectType": "contacts", "match": {"property": "email", "values": ["a"]}},
    )
    await control(client, "POST", "/unique-properties", {"objectType": BOOKINGS, "properties": []})

    assert (await client.post(reset_path)).status == 200

    assert await records(client, "contacts") == []
    assert (await control(client, "GET", "/fail-records"))["rules"] == []
    assert (await control(client, "GET", "/rate-limit"))["daily"] is None
    assert (await control(client, "GET", "/stats"))["calls"] == {}
    assert (await control(client, "GET", "/unique-properties"))[BOOKINGS] == ["booking_ref"]
    again = await hubspot.batch_create("contacts", [contact("r", "a@x.test")])
    assert again.results[0].id == "90101"


async def test_invalid_control_bodies_are_422(client):
    bad = [
        ("/rate-limit", {"requests": -1}),
        ("/rate-limit", {"requests": 1, "policy": "HOURLY"}),
        ("/fail-records", {"objectType": "contacts", "match": {"property": "email", "values": []}}),
        ("/fail-records", {"objectType": "widgets", "match": {"property": "x", "values": ["y"]}}),
        ("/unique-properties", {"objectType": "contacts"}),
    ]

    statuses = [
        (await client.post(f"/_sandbox/hubspot{path}", json=body)).status for path, body in bad
    ]

    assert statuses == [422] * len(bad)


async def test_seeding_a_record_through_the_control_api(client, hubspot):
    seeded = await control(
        client, "POST", "/objects/contacts", {"properties": {"email": "s@x.test"}}
    )
    duplicate = await client.post(
        "/_sandbox/hubspot/objects/contacts", json={"properties": {"email": "S@x.test"}}
    )

    found = await hubspot.batch_read("contacts", ["s@x.test"], ["email"], "email")

    assert duplicate.status == 409
    assert found.results[0].id == seeded["id"]
