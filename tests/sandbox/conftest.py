"""An in-process sandbox per test, with credentials of its own."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from services.sandbox import create_app
from shared.settings import ProviderSettings

SHOPIFY_TOKEN = "test-shopify-token"
C7_APP_ID = "test-app"
C7_SECRET = "test-c7-secret"
SHOPIFY_API = "/shopify/admin/api/2026-07"
SHOPIFY_HEADERS = {"X-Shopify-Access-Token": SHOPIFY_TOKEN}


def basic_auth(login: str, password: str) -> str:
    """An ``Authorization`` value (aiohttp 3.14 deprecates ``BasicAuth``)."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


C7_HEADERS = {
    "Authorization": basic_auth(C7_APP_ID, C7_SECRET),
    "tenant": "testing",
}
SETTINGS = ProviderSettings(
    _env_file=None,
    shopify_access_token=SecretStr(SHOPIFY_TOKEN),
    commerce7_app_id=C7_APP_ID,
    commerce7_app_secret=SecretStr(C7_SECRET),
)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    """A client of a fresh sandbox app on an ephemeral port."""
    async with TestClient(TestServer(create_app(SETTINGS))) as test_client:
        yield test_client
