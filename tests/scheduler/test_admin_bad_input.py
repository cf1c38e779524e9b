"""The admin API never answers bad input with a 5xx: ids beyond 64 bits, integers
written other ways, header values it cannot store, parameters of the wrong JSON type."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_TOKEN, scheduler_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def admin(make_scheduler_app, database, namespace) -> str:
    settings = scheduler_settings(
        database,
        namespace,
        job_packages_bulk_sync={"enabled": True},
        job_repcard_sync={"enabled": True},
    )
    url, _ = await make_scheduler_app(settings, run_loop=False)
    return url


async def test_a_run_id_beyond_64_bits_is_a_404(http, admin) -> None:
    for run_id in (str(2**70), str(2**63), "-" + str(2**70), "1_0", "%00", "1e3"):
        async with http.get(f"{admin}/v1/runs/{run_id}", headers=AUTH) as resp:
            assert (resp.status, resp.content_type) == (404, PROBLEM), run_id


async def test_query_integers_beyond_64_bits_or_spelled_oddly_are_a_422(http, admin) -> None:
    for query in (f"before={2**70}", f"before={2**63}", "limit=1_0", "limit=%2B5", "limit=%205"):
        async with http.get(f"{admin}/v1/runs?{query}", headers=AUTH) as resp:
            assert (resp.status, resp.content_type) == (422, PROBLEM), query
            problem = await resp.json(content_type=None)
            assert problem["errors"][0]["parameter"] == query.split("=")[0]
    async with http.get(f"{admin}/v1/runs?before={2**63 - 1}", headers=AUTH) as resp:
        assert resp.status == 200


async def test_parameters_of_the_wrong_json_type_or_too_big_are_a_422(http, admin, db) -> None:
    cases = [
        ("packages.bulk_sync", {"batchSize": "50"}, "/batchSize"),
        ("packages.bulk_sync", {"batchSize": True}, "/batchSize"),
        ("packages.bulk_sync", {"maxProfiles": 2**70}, "/maxProfiles"),
        ("packages.bulk_sync", {"onlyNewProfiles": "true"}, "/onlyNewProfiles"),
        ("repcard.sync", {"startDate": "0001-01-01"}, "/startDate"),
        ("repcard.sync", {"endDate": 20260101}, "/endDate"),
        ("repcard.sync", {"skipUsers": 1}, "/skipUsers"),
    ]
    for job, params, pointer in cases:
        url = f"{admin}/v1/jobs/{job}/runs"
        async with http.post(url, json=params, headers=AUTH) as resp:
            assert (resp.status, resp.content_type) == (422, PROBLEM), params
            problem = await resp.json(content_type=None)
            assert pointer in {e["pointer"] for e in problem["errors"]}, problem
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 0
    async with http.post(
        f"{admin}/v1/jobs/packages.bulk_sync/runs", json={"batchSize": 50.0}, headers=AUTH
    ) as resp:
        assert resp.status == 202  # 50.0 is a JSON integer


async def test_header_values_it_cannot_store_are_a_422(http, admin, db) -> None:
    url = f"{admin}/v1/jobs/repcard.sync/runs"
    for name, value in (
        ("X-Triggered-By", "x" * 201),
        ("X-Triggered-By", "ops\u00e9"),
        ("Idempotency-Key", "k" * 256),
        ("Idempotency-Key", "caf\u00e9"),
    ):
        async with http.post(url, headers={**AUTH, name: value}) as resp:
            assert (resp.status, resp.content_type) == (422, PROBLEM), (name, value)
            problem = await resp.json(content_type=None)
            assert problem["errors"][0]["parameter"] == name
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 0
