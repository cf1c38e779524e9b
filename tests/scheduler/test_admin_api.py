"""The admin API: auth, jobs, manual runs with validated parameters, run history."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from services.scheduler.main import create_app
from shared.jobs import JOB_KINDS
from tests.conftest import ADMIN_TOKEN, eventually, scheduler_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def admin(make_scheduler_app, database, namespace) -> str:
    """An admin API (not ticking): package sync and RepCard on, HubSpot sync off."""
    settings = scheduler_settings(
        database,
        namespace,
        job_packages_bulk_sync={"enabled": True},
        job_repcard_sync={"enabled": True},
        job_hubspot_batch_sync={"enabled": False},
    )
    url, _ = await make_scheduler_app(settings, run_loop=False)
    return url


async def call(http, method: str, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    kwargs.setdefault("headers", AUTH)
    async with http.request(method, url, **kwargs) as resp:
        body = await resp.json(content_type=None) if await resp.read() else None
        return resp.status, body, resp


async def test_every_v1_route_needs_the_bearer_token(http, admin) -> None:
    refused = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}]
    for headers in refused:
        for method, path in [
            ("GET", "/v1/jobs"),
            ("GET", "/v1/runs"),
            ("GET", "/v1/runs/1"),
            ("GET", "/v1/jobs/enrollments.expire/runs"),
            ("POST", "/v1/jobs/enrollments.expire/runs"),
        ]:
            status, body, resp = await call(http, method, admin + path, headers=headers)
            assert status == 401, (headers, path)
            assert resp.content_type == PROBLEM
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert body["status"] == 401


async def test_without_a_configured_token_the_admin_api_refuses_everyone(
    http, make_scheduler_app, database, namespace
) -> None:
    url, _ = await make_scheduler_app(
        scheduler_settings(database, namespace, admin_token=""), run_loop=False
    )
    status, body, _ = await call(
        http, "GET", f"{url}/v1/jobs", headers={"Authorization": "Bearer "}
    )
    assert status == 401 and "CRMSYNC_ADMIN_TOKEN" in body["detail"]


async def test_health_and_the_openapi_document_need_no_token(http, admin) -> None:
    for path in ("/healthz", "/openapi.json", "/metrics"):
        async with http.get(admin + path) as resp:
            assert resp.status == 200, path
    await eventually(lambda: _status(http, admin + "/readyz", 200))


async def _status(http, url: str, expected: int) -> bool:
    async with http.get(url) as resp:
        return resp.status == expected


async def test_jobs_lists_each_job_with_its_schedule_next_tick_and_last_run(http, admin) -> None:
    status, body, _ = await call(http, "GET", f"{admin}/v1/jobs")
    assert status == 200
    jobs = {j["name"]: j for j in body["jobs"]}
    assert set(jobs) == {
        "enrollments.expire",
        "packages.bulk_sync",
        "hubspot.batch_sync",
        "repcard.sync",
        "hubspot.drift_check",
    }
    expire = jobs["enrollments.expire"]
    assert expire["enabled"] is True
    assert expire["schedule"] == {"cron": "0 2 * * *", "timezone": "UTC"}
    assert expire["nextTick"].endswith("T02:00:00+00:00")
    assert expire["lastRun"] is None
    assert expire["queue"] == "syncer.jobs.enrollments_expire"
    assert jobs["hubspot.batch_sync"]["enabled"] is False
    assert jobs["hubspot.batch_sync"]["nextTick"] is None
    assert "batchSize" in jobs["packages.bulk_sync"]["parameters"]["properties"]

    status, _, _ = await call(http, "POST", f"{admin}/v1/jobs/repcard.sync/runs", json={})
    assert status == 202
    _, body, _ = await call(http, "GET", f"{admin}/v1/jobs")
    last = {j["name"]: j["lastRun"] for j in body["jobs"]}["repcard.sync"]
    assert last["trigger"] == "manual" and last["status"] == "scheduled"


async def test_an_unknown_job_is_404(http, admin) -> None:
    for method in ("GET", "POST"):
        status, body, resp = await call(http, method, f"{admin}/v1/jobs/nope/runs")
        assert status == 404 and resp.content_type == PROBLEM
        assert "nope" in body["detail"]


async def test_a_disabled_job_cannot_be_triggered(http, admin) -> None:
    status, body, _ = await call(http, "POST", f"{admin}/v1/jobs/hubspot.batch_sync/runs")
    assert status == 409 and "disabled" in body["detail"]


BAD_PARAMETERS = [
    (
        "packages.bulk_sync",
        {"batchSize": 0, "onlyNewProfiles": "perhaps", "colour": "red"},
        {"/batchSize", "/onlyNewProfiles", "/colour"},
    ),
    ("packages.bulk_sync", {"maxProfiles": -5}, {"/maxProfiles"}),
    ("repcard.sync", {"startDate": "2026-02-01", "endDate": "2026-01-01"}, {"/endDate"}),
    ("repcard.sync", {"startDate": "yesterday"}, {"/startDate"}),
    ("enrollments.expire", {"anything": 1}, {"/anything"}),
]


async def test_bad_parameters_are_422_naming_each_field(http, admin, db) -> None:
    for job, params, pointers in BAD_PARAMETERS:
        status, body, resp = await call(http, "POST", f"{admin}/v1/jobs/{job}/runs", json=params)
        assert status == 422 and resp.content_type == PROBLEM
        assert {e["pointer"] for e in body["errors"]} == pointers, params
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 0


async def test_a_body_that_is_not_a_json_object_is_400(http, admin) -> None:
    for body in (b"{not json", b"[1, 2]", b'"batchSize"'):
        status, problem, _ = await call(
            http, "POST", f"{admin}/v1/jobs/packages.bulk_sync/runs", data=body
        )
        assert status == 400 and problem["title"] == "Bad Request", body


async def test_a_trigger_is_202_with_the_run_id_and_stores_complete_parameters(
    http, admin, db
) -> None:
    headers = {**AUTH, "X-Triggered-By": "ops@example"}
    status, body, resp = await call(
        http,
        "POST",
        f"{admin}/v1/jobs/packages.bulk_sync/runs",
        json={"batchSize": 50, "onlyNewProfiles": True},
        headers=headers,
    )
    assert status == 202 and body["status"] == "scheduled"
    assert resp.headers["Location"] == f"/v1/runs/{body['runId']}"
    status, run, _ = await call(http, "GET", admin + resp.headers["Location"])
    assert status == 200
    assert run["params"] == {"batchSize": 50, "maxProfiles": None, "onlyNewProfiles": True}
    assert (run["trigger"], run["triggeredBy"], run["status"]) == (
        "manual",
        "ops@example",
        "scheduled",
    )
    event = await db.fetchrow("SELECT * FROM outbox")
    assert event["event_id"] == f"job-run-{run['id']}"
    assert event["routing_key"] == "job.packages.bulk_sync"


async def test_the_same_idempotency_key_returns_the_same_run(http, admin, db) -> None:
    url = f"{admin}/v1/jobs/repcard.sync/runs"
    headers = {**AUTH, "Idempotency-Key": "refresh-2026-01-01"}
    params = {"incremental": False, "skipUsers": True}
    _, first, _ = await call(http, "POST", url, json=params, headers=headers)
    status, again, _ = await call(http, "POST", url, json=params, headers=headers)
    assert status == 202 and again["runId"] == first["runId"]
    status, problem, _ = await call(http, "POST", url, json={"incremental": True}, headers=headers)
    assert status == 409 and "Idempotency-Key" in problem["detail"]
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 1
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def test_runs_are_listed_newest_first_and_paged(http, admin) -> None:
    ids = []
    for _ in range(3):
        _, body, _ = await call(http, "POST", f"{admin}/v1/jobs/repcard.sync/runs")
        ids.append(body["runId"])
    await call(http, "POST", f"{admin}/v1/jobs/packages.bulk_sync/runs")
    _, body, _ = await call(http, "GET", f"{admin}/v1/jobs/repcard.sync/runs?limit=2")
    assert [r["id"] for r in body["runs"]] == ids[::-1][:2]
    _, body, _ = await call(http, "GET", f"{admin}/v1/jobs/repcard.sync/runs?before={ids[1]}")
    assert [r["id"] for r in body["runs"]] == [ids[0]]
    _, body, _ = await call(http, "GET", f"{admin}/v1/runs")
    assert [r["job"] for r in body["runs"]] == ["packages.bulk_sync"] + ["repcard.sync"] * 3
    for query in ("limit=0", "limit=501", "limit=ten", "before=0"):
        status, problem, _ = await call(http, "GET", f"{admin}/v1/runs?{query}")
        assert status == 422, query
        assert problem["errors"][0]["parameter"] == query.split("=")[0]


async def test_an_unknown_run_is_404(http, admin) -> None:
    for run_id in ("999", "abc", "-1"):
        status, _, resp = await call(http, "GET", f"{admin}/v1/runs/{run_id}")
        assert status == 404 and resp.content_type == PROBLEM


async def test_a_manual_expiry_run_ends_succeeded_with_totals(
    http, syncer, make_scheduler_app, database, namespace, db
) -> None:
    url, _ = await make_scheduler_app(scheduler_settings(database, namespace), run_loop=False)
    customer = await db.fetchval(
        "INSERT INTO customers (provider, external_id, is_member) VALUES ('shopify', '77', true)"
        " RETURNING id"
    )
    await db.execute(
        "INSERT INTO enrolments (customer_id, tier_id, expires_at)"
        " SELECT $1, id, now() - interval '1 hour' FROM tiers WHERE name = 'Bronze'",
        customer,
    )
    status, body, _ = await call(http, "POST", f"{url}/v1/jobs/enrollments.expire/runs")
    assert status == 202

    async def finished() -> Any:
        _, run, _ = await call(http, "GET", f"{url}/v1/runs/{body['runId']}")
        return run if run["status"] not in ("scheduled", "running") else None

    run = await eventually(finished)
    assert run["status"] == "succeeded"
    assert run["totals"] == {"expired": 1, "membersCleared": 1, "cancellationsQueued": 1}
    assert run["attempts"] == 1 and run["error"] is None
    assert run["startedAt"] <= run["finishedAt"] and run["durationSeconds"] >= 0


async def test_the_openapi_document_names_every_route_and_problem(http, admin) -> None:
    async with http.get(f"{admin}/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    app = create_app(scheduler_settings("postgresql://unused/x", "unused."))
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if isinstance(r.resource, web.Resource)
        and r.method != "HEAD"
        # The web console's HTML pages are not part of the API.
        and not r.resource.canonical.startswith("/console")
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    # Each job also has a path of its own, documenting its parameters as the body.
    per_job = {(m, f"/v1/jobs/{name}/runs") for name in JOB_KINDS for m in ("get", "post")}
    assert per_job <= documented
    assert routes - {("get", "/openapi.json")} == documented - per_job
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for code, response in op["responses"].items():
                if int(code) >= 400:
                    assert PROBLEM in response["content"], (method, path, code)
    for name in ("PackagesBulkSyncParams", "RepCardSyncParams", "Run", "Problem"):
        assert name in doc["components"]["schemas"]
