"""Helpers for the going-live tests: a CRM database, the CLI as a process, sandbox calls."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.sandbox.crmdb import seed_crm_database
from tests.conftest import AMQP_URL, PG_ADMIN, _dsn


@pytest.fixture
async def crm_database() -> AsyncIterator[str]:
    """DSN of a CRM database of this test's own, with the sandbox's views (no rows)."""
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await seed_crm_database(_dsn(name), customers=0)
    yield _dsn(name)
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def sandbox_env(sandbox: str, **extra: str) -> dict[str, str]:
    """``CRMSYNC_*`` pointing every provider at ``sandbox`` (sandbox default tokens)."""
    return {
        "CRMSYNC_SHOPIFY_BASE_URL": f"{sandbox}/shopify",
        "CRMSYNC_COMMERCE7_BASE_URL": f"{sandbox}/commerce7/v1",
        "CRMSYNC_HUBSPOT_BASE_URL": f"{sandbox}/hubspot",
        "CRMSYNC_REPCARD_BASE_URL": f"{sandbox}/repcard",
        "CRMSYNC_AMQP_URL": AMQP_URL,
        "CRMSYNC_LOG_FORMAT": "json",
        **extra,
    }


async def run_cli(*args: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str]:
    """``crmsync ARGS`` as a process (no developer .env is read): exit status, out, err."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")} | env
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        env=environ, cwd=tempfile.mkdtemp(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def control(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    """A sandbox control call that must succeed; its JSON."""
    async with http.request(method, url, json=body) as resp:
        assert resp.status < 300, f"{resp.status} {await resp.text()}"
        return await resp.json()
