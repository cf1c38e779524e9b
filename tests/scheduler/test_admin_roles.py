"""Admin roles: one token per role; viewers read, operators trigger, admins do all."""

from __future__ import annotations

from typing import Any

import pytest

from services.scheduler.auth import Role, role_of
from tests.conftest import ADMIN_TOKEN, scheduler_settings

VIEWER = "test-viewer-token-0123456789"
OPERATOR = "test-operator-token-0123456789"
PROBLEM = "application/problem+json"


@pytest.fixture
async def admin(make_scheduler_app, database, namespace) -> str:
    settings = scheduler_settings(
        database, namespace, admin_viewer_token=VIEWER, admin_operator_token=OPERATOR
    )
    url, _ = await make_scheduler_app(settings, run_loop=False)
    return url


async def call(http, method: str, url: str, token: str) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.content_type


async def test_a_viewer_reads_but_cannot_trigger_a_run(http, admin, db) -> None:
    status, _, _ = await call(http, "GET", f"{admin}/v1/jobs", VIEWER)
    assert status == 200
    status, body, content_type = await call(
        http, "POST", f"{admin}/v1/jobs/enrollments.expire/runs", VIEWER
    )
    assert status == 403
    assert content_type == PROBLEM
    assert "operator" in body["detail"] and "viewer" in body["detail"]
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 0


@pytest.mark.parametrize("token", [OPERATOR, ADMIN_TOKEN])
async def test_an_operator_or_an_admin_triggers_a_run(http, admin, db, token: str) -> None:
    status, body, _ = await call(http, "POST", f"{admin}/v1/jobs/enrollments.expire/runs", token)
    assert status == 202
    assert await db.fetchval("SELECT trigger FROM job_runs WHERE id = $1", body["runId"]) == (
        "manual"
    )


def test_the_highest_role_of_a_matching_token_wins_and_other_schemes_match_nothing() -> None:
    tokens = [(Role.admin, b"same"), (Role.viewer, b"same"), (Role.operator, b"op")]
    assert role_of("Bearer same", tokens) is Role.admin
    assert role_of("bearer op", tokens) is Role.operator
    assert role_of("Basic op", tokens) is None
    assert role_of("Bearer nope", tokens) is None
    assert role_of("", tokens) is None
