"""``crmsync doctor`` against a correctly set up sandbox, then with each fault in turn."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
import aiohttp
import pytest
from pydantic import SecretStr

from shared import queues
from shared.clients.commerce7_webhooks import Commerce7WebhooksClient
from shared.clients.shopify_webhooks import ShopifyWebhooksClient
from shared.doctor import DoctorInputs, DoctorReport, Status, run_doctor
from shared.jobs import JOB_QUEUES
from shared.topology import Topology
from shared.webhook_registration import register_commerce7, register_shopify
from tests.conftest import (
    ADMIN_TOKEN,
    AMQP_URL,
    free_port,
    intake_settings,
    scheduler_settings,
    syncer_settings,
)
from tests.golive.conftest import control, run_cli, sandbox_env

OPERATOR_TOKEN = "test-operator-token-42"
VIEWER_TOKEN = "test-viewer-token-42"


class Deployment:
    """A migrated database, a declared topology, a CRM database with the views, a
    sandbox with crmsync's HubSpot properties and its webhooks registered."""

    def __init__(self, database: str, namespace: str, sandbox: str, crm: str) -> None:
        self.database, self.namespace, self.sandbox, self.crm = database, namespace, sandbox, crm

    def inputs(
        self, *, syncer: dict[str, Any] | None = None, intake: dict[str, Any] | None = None
    ) -> DoctorInputs:
        return DoctorInputs(
            intake_settings(self.namespace, **(intake or {})),
            syncer_settings(
                self.database, self.namespace, self.sandbox, crm_database_url=self.crm,
                **(syncer or {}),
            ),
            scheduler_settings(self.database, self.namespace),
        )  # fmt: skip

    def env(self, **extra: str) -> dict[str, str]:
        return sandbox_env(
            self.sandbox,
            CRMSYNC_DATABASE_URL=self.database,
            CRMSYNC_AMQP_NAMESPACE=self.namespace,
            CRMSYNC_CRM_DATABASE_URL=self.crm,
            CRMSYNC_COMMERCE7_TENANTS="testing",
            CRMSYNC_SHOPIFY_WEBHOOK_SECRET="test-shopify-secret",
            CRMSYNC_ADMIN_TOKEN=ADMIN_TOKEN,
            **extra,
        )


@pytest.fixture
async def deployment(
    http: aiohttp.ClientSession, database: str, namespace: str, sandbox: str, crm_database: str
) -> Deployment:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await Topology(namespace).declare(channel, [*queues.ALL, *JOB_QUEUES.values()])
    finally:
        await connection.close()
    setup = Deployment(database, namespace, sandbox, crm_database)
    providers = setup.inputs().syncer
    await register_shopify(
        ShopifyWebhooksClient.from_settings(http, providers), "https://x.test/webhooks/shopify"
    )
    await register_commerce7(
        Commerce7WebhooksClient.from_settings(http, providers),
        "testing",
        "https://x.test/webhooks/commerce7",
    )
    return setup


def failing(report: DoctorReport) -> list[str]:
    return [c.name for c in report.checks if c.status is Status.fail]


ALL_CHECKS = [
    "postgres", "migrations", "rabbitmq", "queues", "hubspot.credentials", "hubspot.schema",
    "shopify.credentials", "shopify.webhooks", "commerce7.credentials", "commerce7.webhooks",
    "repcard.credentials", "crm_views", "secrets",
]  # fmt: skip


async def test_a_correctly_set_up_deployment_is_all_ticks(deployment: Deployment) -> None:
    report = await run_doctor(deployment.inputs())
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert {c.name: c.status for c in report.checks} == dict.fromkeys(ALL_CHECKS, Status.ok), (
        report.lines()
    )
    assert report.ok


async def test_the_cli_prints_a_line_per_check_and_exits_0(deployment: Deployment) -> None:
    status, out, err = await run_cli("doctor", env=deployment.env())
    assert status == 0, (out, err)
    lines = out.splitlines()
    assert len(lines) == len(ALL_CHECKS)
    assert all(line.startswith("✓ ") for line in lines)
    status, out, _ = await run_cli("doctor", "--json", env=deployment.env())
    assert status == 0
    assert json.loads(out)["ok"] is True


async def test_a_wrong_repcard_key_fails_that_line_alone(deployment: Deployment) -> None:
    inputs = deployment.inputs(syncer={"repcard_api_key": SecretStr("not-the-key")})
    report = await run_doctor(inputs)
    assert failing(report) == ["repcard.credentials"]
    line = report.by_name("repcard.credentials")
    assert "HTTP 401" in line.detail and "refused the API key" in line.detail
    assert "CRMSYNC_REPCARD_API_KEY" in line.hint
    assert "not-the-key" not in json.dumps(report.to_json())


async def test_a_wrong_hubspot_token_fails_that_line_alone(deployment: Deployment) -> None:
    inputs = deployment.inputs(syncer={"hubspot_access_token": SecretStr("not-the-token")})
    report = await run_doctor(inputs)
    assert failing(report) == ["hubspot.credentials"]
    line = report.by_name("hubspot.credentials")
    assert "HTTP 401" in line.detail and "refused the access token" in line.detail
    assert "CRMSYNC_HUBSPOT_ACCESS_TOKEN" in line.hint
    assert report.by_name("hubspot.schema").status is Status.skip
    assert "not-the-token" not in json.dumps(report.to_json())


async def test_a_missing_property_fails_that_line_with_the_setup_hint(
    http: aiohttp.ClientSession, deployment: Deployment
) -> None:
    await control(
        http, "DELETE", f"{deployment.sandbox}/_sandbox/hubspot/properties/2-1001/booking_ref"
    )
    report = await run_doctor(deployment.inputs())
    assert failing(report) == ["hubspot.schema"]
    line = report.by_name("hubspot.schema")
    assert line.detail == "missing: bookings.booking_ref"
    assert "crmsync hubspot setup" in line.hint


async def test_a_queue_declared_with_other_arguments_fails_naming_queue_and_argument(
    deployment: Deployment,
) -> None:
    topology = Topology(deployment.namespace)
    name = topology.queue(queues.CREDITS)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(name)
        arguments = topology.work_queue_arguments(queues.CREDITS) | {"x-delivery-limit": 5}
        await channel.declare_queue(name, durable=True, arguments=arguments)
    finally:
        await connection.close()
    report = await run_doctor(deployment.inputs())
    assert failing(report) == ["queues"]
    line = report.by_name("queues")
    assert line.detail == f"{name}: x-delivery-limit is '5' on the broker, crmsync declares '20'"
    assert "delete it" in line.hint


async def test_a_placeholder_secret_fails_that_line_naming_the_setting(
    deployment: Deployment,
) -> None:
    placeholder = "dev-shopify-webhook-secret-change-me"
    report = await run_doctor(deployment.inputs(intake={"shopify_webhook_secret": placeholder}))
    assert failing(report) == ["secrets"]
    line = report.by_name("secrets")
    assert line.detail == "CRMSYNC_SHOPIFY_WEBHOOK_SECRET is a placeholder from .env.example"
    assert "CRMSYNC_ENV=production" in line.hint
    assert placeholder not in json.dumps(report.to_json())


async def test_an_unreachable_commerce7_fails_that_line(deployment: Deployment) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    report = await run_doctor(deployment.inputs(syncer={"commerce7_base_url": nowhere}))
    assert failing(report) == ["commerce7.credentials"]
    line = report.by_name("commerce7.credentials")
    assert nowhere in line.detail and "ClientConnectorError" in line.detail
    assert "reachable" in line.hint
    assert report.by_name("commerce7.webhooks").status is Status.skip


async def test_the_cli_exits_1_and_prints_the_hint_on_a_failure(deployment: Deployment) -> None:
    env = deployment.env(CRMSYNC_HUBSPOT_ACCESS_TOKEN="not-the-token")
    status, out, _ = await run_cli("doctor", env=env)
    assert status == 1
    failed = [line for line in out.splitlines() if line.startswith("✗ ")]
    assert len(failed) == 1 and failed[0].startswith("✗ HubSpot credentials")
    assert "→ check CRMSYNC_HUBSPOT_ACCESS_TOKEN" in out
    status, out, _ = await run_cli("doctor", "--json", env=env)
    assert status == 1
    body = json.loads(out)
    assert body["ok"] is False
    assert [c["name"] for c in body["checks"] if c["status"] == "fail"] == ["hubspot.credentials"]


async def test_pending_migrations_and_a_missing_view_are_failures(
    deployment: Deployment, crm_database: str
) -> None:
    import asyncpg

    conn = await asyncpg.connect(deployment.database)
    await conn.execute("DELETE FROM schema_migrations WHERE name = '0007_outbox_poll_only.sql'")
    await conn.close()
    conn = await asyncpg.connect(crm_database)
    await conn.execute("DROP VIEW crm_packages")
    await conn.close()
    report = await run_doctor(deployment.inputs())
    assert failing(report) == ["migrations", "crm_views"]
    assert report.by_name("migrations").detail == "1 pending: 0007_outbox_poll_only.sql"
    assert "crmsync migrate" in report.by_name("migrations").hint
    assert report.by_name("crm_views").detail.endswith("crm_packages not found")


async def test_the_admin_api_serves_the_report_to_operators_only(
    make_scheduler_app, deployment: Deployment
) -> None:
    settings = scheduler_settings(
        deployment.database, deployment.namespace,
        admin_operator_token=OPERATOR_TOKEN, admin_viewer_token=VIEWER_TOKEN,
    )  # fmt: skip
    inputs = deployment.inputs(syncer={"hubspot_access_token": SecretStr("not-the-token")})
    url, _ = await make_scheduler_app(settings, run_loop=False, doctor=inputs)
    async with aiohttp.ClientSession() as http:
        viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
        async with http.get(f"{url}/v1/doctor", headers=viewer) as resp:
            assert resp.status == 403
            assert "operator" in (await resp.json())["detail"]
        async with http.get(f"{url}/v1/doctor") as resp:
            assert resp.status == 401
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        async with http.get(f"{url}/v1/doctor", headers=operator) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["ok"] is False
    assert [c["name"] for c in body["checks"] if c["status"] == "fail"] == ["hubspot.credentials"]
    async with aiohttp.ClientSession() as http, http.get(f"{url}/openapi.json") as resp:
        assert "/v1/doctor" in (await resp.json())["paths"]
