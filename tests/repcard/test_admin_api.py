"""``/v1/repcard/sync``: roles, parameters, and the log it reads back."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN_TOKEN, scheduler_settings
from tests.repcard.helpers import repcard_settings, seed_company
from tests.syncer.test_job_failures import ended

VIEWER, OPERATOR = "test-viewer-token-0123456789", "test-operator-token-0123456789"
PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(http, method: str, url: str, token: str, body: Any = None) -> tuple[int, Any, str]:
    async with http.request(method, url, json=body, headers=bearer(token)) as resp:
        return resp.status, await resp.json(content_type=None), resp.content_type


async def test_the_admin_api_refuses_a_viewer_and_runs_an_admins_full_pull(
    make_scheduler_app, make_syncer, database, namespace, sandbox, http, db
) -> None:
    await seed_company(http, sandbox, customers=60, status_logs=80)
    settings = scheduler_settings(
        database, namespace, admin_viewer_token=VIEWER, admin_operator_token=OPERATOR
    )
    admin, _ = await make_scheduler_app(settings, run_loop=False)
    url = f"{admin}/v1/repcard/sync"
    status, body, ctype = await call(http, "POST", url, VIEWER, {"incremental": True})
    assert (status, ctype) == (403, PROBLEM) and "operator" in body["detail"]
    # An operator may pull incrementally, not in full (nor through the generic route).
    status, body, ctype = await call(http, "POST", url, OPERATOR, {"incremental": False})
    assert (status, ctype) == (403, PROBLEM) and "admin" in body["detail"]
    generic = f"{admin}/v1/jobs/repcard.sync/runs"
    status, _, _ = await call(http, "POST", generic, OPERATOR, {"incremental": False})
    assert status == 403
    status, body, ctype = await call(http, "POST", url, OPERATOR, {"startDate": "soon"})
    assert (status, ctype) == (422, PROBLEM)
    assert any(e.get("pointer") == "/startDate" for e in body["errors"])

    await make_syncer(repcard_settings(database, namespace, sandbox))
    status, body, _ = await call(http, "POST", url, ADMIN_TOKEN, {"incremental": False})
    assert status == 202
    run = await ended(db, body["runId"], timeout_s=60)
    assert run["status"] == "succeeded", run["error"]
    status, body, _ = await call(http, "GET", url, VIEWER)
    assert status == 200
    assert body["run"]["id"] == run["id"]
    entities = {e["entityType"]: e for e in body["entities"]}
    assert entities["customers"]["recordsInserted"] == 60
    assert {e["status"] for e in entities.values()} == {"succeeded"}
    async with http.get(f"{admin}/openapi.json") as resp:
        doc = await resp.json()
    assert {"get", "post"} <= set(doc["paths"]["/v1/repcard/sync"])
