"""Schemathesis against intake's /openapi.json: every check, 0 server errors, 0 mismatches.

Intake runs for real (its own RabbitMQ namespace) with a real syncer and sandbox
behind it, so package refreshes and their status are answered as in production.
Webhooks carry valid credentials (Shopify's HMAC over the exact body, Commerce7's
Basic auth), app events a valid API key, so bodies are checked past authentication.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis

from services.intake.app import create_app
from services.intake.keys import broker_key
from services.sandbox.crmdb import seed_crm_database
from tests.conftest import (
    COMMERCE7_PASSWORD,
    COMMERCE7_USER,
    PG_ADMIN,
    SHOPIFY_SECRET,
    _dsn,
    intake_settings,
    syncer_settings,
)
from tests.fuzz import (
    FUZZ_SETTINGS,
    ShopifyHmac,
    fuzz_config,
    pytest9_node_id,
    run_app,
    serve_in_thread,
)

API_KEY = "fuzz-api-key-0123456789"
# Statuses seen per operation, to show the run got past authentication.
STATUSES: dict[str, set[int]] = {}
# Operations whose schema-valid requests (with the credentials) must have been accepted.
ACCEPTING = (
    "POST /webhooks/shopify",
    "POST /v1/events/credits",
    "POST /v1/events/bookings",
    "POST /v1/events/login",
    "POST /v1/profiles/{profileId}/packages/sync",
)


@pytest.fixture(autouse=True)
def _node_id(request: pytest.FixtureRequest) -> None:
    pytest9_node_id(request)


@pytest.fixture
async def crm_database() -> AsyncIterator[str]:
    """An empty CRM database (the sandbox's tables and views) for the syncer to read."""
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await seed_crm_database(_dsn(name), customers=0)
    yield _dsn(name)
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def intake_schema(database: str, namespace: str, crm_database: str) -> Iterator[Any]:
    async def start() -> tuple[str, Any]:
        from services.sandbox.app import create_app as create_sandbox
        from services.syncer.main import Syncer
        from shared.settings import ProviderSettings

        sandbox_url, stop_sandbox = await run_app(create_sandbox(ProviderSettings(_env_file=None)))
        syncer = Syncer(
            syncer_settings(database, namespace, sandbox_url, crm_database_url=crm_database)
        )
        await syncer.start()
        # A confirm may take long on a loaded machine: no 503 for that here.
        settings = intake_settings(
            namespace, api_keys={"fuzz": API_KEY}, refresh_wait_s=0.5, publish_timeout_s=30
        )
        app = create_app(settings)
        url, stop_intake = await run_app(app)
        await app[broker_key].wait_ready(10)

        async def stop() -> None:
            await stop_intake()
            await syncer.stop()
            await stop_sandbox()

        return url, stop

    STATUSES.clear()
    with serve_in_thread(start) as url:
        yield schemathesis.openapi.from_url(
            f"{url}/openapi.json",
            config=fuzz_config(
                {
                    "basic": {"username": COMMERCE7_USER, "password": COMMERCE7_PASSWORD},
                    "apiKey": {"bearer": API_KEY},
                }
            ),
        )
    accepted = {op for op, seen in STATUSES.items() if any(200 <= s < 300 for s in seen)}
    assert set(ACCEPTING) <= accepted, STATUSES


schema = schemathesis.pytest.from_fixture("intake_schema")


def credentials(case: Any) -> dict[str, Any]:
    """Shopify's signature, which is no security scheme: it covers the exact body.
    (Commerce7's Basic auth and the API key are the document's schemes, configured.)"""
    if case.operation.path == "/webhooks/shopify":
        return {"auth": ShopifyHmac(SHOPIFY_SECRET)}
    return {}


@pytest.mark.timeout(300)
@schema.parametrize()
@FUZZ_SETTINGS
def test_intake_answers_as_its_openapi_document_says(case: Any) -> None:
    response = case.call_and_validate(**credentials(case))
    STATUSES.setdefault(case.operation.label, set()).add(response.status_code)
