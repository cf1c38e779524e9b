"""``crmsync hubspot setup`` against the HubSpot sandbox's properties API."""

from __future__ import annotations

from datetime import date
from typing import Any

import aiohttp
import pytest

from services.syncer.hubspot.batch_sync import _booking_kind, _exam_kind
from services.syncer.hubspot.records import contact_properties
from shared.clients.hubspot import BatchUpsertInput, HubSpotClient
from shared.clients.hubspot_properties import (
    HubSpotSchemaClient,
    PropertyDefinition,
    PropertyExistsError,
)
from shared.errors import ProviderRejectedError
from shared.hubspot_setup import apply, inspect, required_objects
from shared.messages.credits import CREDIT_FIELDS
from shared.settings import ProviderSettings, SyncerSettings
from tests.golive.conftest import control, run_cli, sandbox_env

BOOKINGS, EXAMS = "2-1001", "2-1002"


def settings(sandbox: str, **overrides: Any) -> ProviderSettings:
    return ProviderSettings(_env_file=None, hubspot_base_url=f"{sandbox}/hubspot", **overrides)


@pytest.fixture
async def fresh(http: aiohttp.ClientSession, sandbox: str) -> str:
    """The sandbox as a new HubSpot account: none of crmsync's properties."""
    await control(http, "POST", f"{sandbox}/_sandbox/hubspot/account", {"preset": "fresh"})
    return sandbox


async def stats(http: aiohttp.ClientSession, sandbox: str) -> dict[str, Any]:
    return await control(http, "GET", f"{sandbox}/_sandbox/hubspot/stats")


def writes(calls: dict[str, int]) -> int:
    return sum(n for call, n in calls.items() if call.startswith("POST /crm/v3/properties"))


def test_the_required_properties_cover_everything_the_syncer_writes() -> None:
    syncer = SyncerSettings(_env_file=None)
    required = {r.object_type: {p.name for p in r.properties} for r in required_objects(syncer)}
    contact = {"email": "a@b.test", "first_name": "A", "last_name": "B", "student_id": "s1",
               "credits": dict.fromkeys(CREDIT_FIELDS, 1)}  # fmt: skip
    builtin = {"email", "firstname", "lastname"}
    assert set(contact_properties(contact)) - builtin <= required["contacts"]
    exam = {"exam_ref": "mx", "name": "Mock", "exam_date": date(2026, 1, 2), "total_bookings": 3}
    assert set(_exam_kind(syncer).properties(exam)) == required[EXAMS]
    booking = {"booking_ref": "bk", "status": "confirmed", "attended": True,
               "student_id": "s1", "exam_ref": "mx"}  # fmt: skip
    assert set(_booking_kind(syncer).properties(booking)) == required[BOOKINGS]
    unique = {(r.object_type, p.name) for r in required_objects(syncer) for p in r.properties
              if p.has_unique_value}  # fmt: skip
    assert unique == {(EXAMS, "exam_ref"), (BOOKINGS, "booking_ref")}


async def test_setup_creates_the_properties_once_and_a_second_run_creates_nothing(
    http, fresh
) -> None:
    env = sandbox_env(fresh)
    status, out, err = await run_cli("hubspot", "setup", "--dry-run", env=env)
    assert status == 0, (out, err)
    assert "would create 15 properties" in out
    assert writes((await stats(http, fresh))["calls"]) == 0

    status, out, err = await run_cli("hubspot", "setup", env=env)
    assert status == 0, (out, err)
    assert "created 15 properties; 0 problem(s)" in out
    assert "+ property group crmsync created" in out
    first = writes((await stats(http, fresh))["calls"])
    assert first == 15 + 3  # each property, and the crmsync group on each object type

    status, out, err = await run_cli("hubspot", "setup", env=env)
    assert status == 0, (out, err)
    assert "created 0 properties; 0 problem(s)" in out
    assert writes((await stats(http, fresh))["calls"]) == first
    booking_ref = next(line for line in out.splitlines() if "booking_ref" in line)
    assert "string, unique" in booking_ref and "exists" in booking_ref


async def test_an_upsert_by_booking_ref_is_refused_until_setup_makes_it_unique(http, fresh) -> None:
    config = settings(fresh)
    hubspot = HubSpotClient.from_settings(http, config)
    booking = [BatchUpsertInput(id="bk-1", id_property="booking_ref", properties={"status": "x"})]
    with pytest.raises(ProviderRejectedError, match="non-unique"):
        await hubspot.batch_upsert(BOOKINGS, booking)
    client = HubSpotSchemaClient.from_settings(http, config)
    report = await apply(client, await inspect(client, config))
    assert report.problems == []
    result = await hubspot.batch_upsert(BOOKINGS, booking)
    assert [r.new for r in result.results] == [True]


async def test_an_existing_key_property_that_is_not_unique_is_a_problem_setup_reports(
    http, fresh
) -> None:
    config = settings(fresh)
    client = HubSpotSchemaClient.from_settings(http, config)
    group = f"{fresh}/hubspot/crm/v3/properties/{BOOKINGS}"
    headers = {"Authorization": "Bearer sandbox-hubspot-token"}
    body = {"name": "booking_ref", "label": "Booking ref", "type": "string",
            "fieldType": "text", "groupName": "booking_information"}  # fmt: skip
    async with http.post(group, json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    report = await apply(client, await inspect(client, config))
    assert report.problems == [
        "bookings.booking_ref: exists without hasUniqueValue, which HubSpot cannot change"
        " later: delete the property in HubSpot (Settings > Properties) and run setup again"
    ]
    # Everything else was still created.
    assert len(report.with_state("created")) == 14


async def test_a_missing_custom_object_is_reported_not_created(http, fresh) -> None:
    await control(http, "DELETE", f"{fresh}/_sandbox/hubspot/schemas/{EXAMS}")
    config = settings(fresh)
    client = HubSpotSchemaClient.from_settings(http, config)
    report = await apply(client, await inspect(client, config))
    assert any(
        "no custom object 2-1002" in p and "CRMSYNC_HUBSPOT_MOCK_EXAM_OBJECT_TYPE" in p
        for p in report.problems
    )
    assert any("no association definition to 2-1002" in p for p in report.problems)
    exams = next(o for o in report.objects if o.requirement.object_type == EXAMS)
    assert exams.properties == []


async def test_the_sandbox_answers_409_for_a_property_that_exists(http, sandbox) -> None:
    client = HubSpotSchemaClient.from_settings(http, settings(sandbox))
    definition = PropertyDefinition(
        name="student_id", label="Student ID", type="string", field_type="text",
        group_name="crmsync",
    )  # fmt: skip
    with pytest.raises(PropertyExistsError) as caught:
        await client.create_property("contacts", definition)
    assert caught.value.status == 409
    assert "already exists" in caught.value.body


async def test_the_sandbox_refuses_a_type_and_field_type_that_do_not_go_together(
    http, sandbox
) -> None:
    client = HubSpotSchemaClient.from_settings(http, settings(sandbox))
    definition = PropertyDefinition(
        name="odd", label="Odd", type="number", field_type="text", group_name="crmsync"
    )
    with pytest.raises(ProviderRejectedError) as caught:
        await client.create_property("contacts", definition)
    assert caught.value.status == 400
    assert "not valid for type 'number'" in caught.value.body


async def test_setup_with_a_wrong_token_exits_1_with_hubspot_s_401(fresh) -> None:
    env = sandbox_env(fresh, CRMSYNC_HUBSPOT_ACCESS_TOKEN="wrong-token")
    status, _, err = await run_cli("hubspot", "setup", env=env)
    assert status == 1
    assert "refused the access token (401" in err
