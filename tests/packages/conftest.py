"""A CRM database of the test's own (``crm_<hex>``), empty or seeded, and a reader on it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from services.sandbox.crmdb import seed_crm_database
from services.syncer.packages.crm import CrmReader, create_crm_pool
from tests.conftest import PG_ADMIN, _dsn


@pytest.fixture
async def make_crm_database() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await make_crm_database(customers=0)`` → DSN of a new CRM database with the
    sandbox's tables and views (and ``customers`` sample clients); dropped afterwards."""
    made: list[str] = []

    async def make(customers: int = 0, seed: int = 42) -> str:
        name = f"crm_{uuid.uuid4().hex[:12]}"
        made.append(name)
        await seed_crm_database(_dsn(name), customers=customers, seed=seed)
        return _dsn(name)

    yield make
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def crm_database(make_crm_database: Callable[..., Awaitable[str]]) -> str:
    """An empty CRM database (tables and views, no rows)."""
    return await make_crm_database()


@pytest.fixture
async def crm_conn(crm_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A writable connection to the CRM's base tables, to arrange each test's data."""
    conn = await asyncpg.connect(crm_database)
    yield conn
    await conn.close()


@pytest.fixture
async def make_crm() -> AsyncIterator[Callable[..., Awaitable[CrmReader]]]:
    """``await make_crm(dsn, statement_timeout_ms=..., max_size=...)`` → a CrmReader."""
    pools: list[Any] = []

    async def make(dsn: str, statement_timeout_ms: int = 5000, max_size: int = 2) -> CrmReader:
        pool = await create_crm_pool(dsn, max_size, statement_timeout_ms)
        pools.append(pool)
        return CrmReader(pool, default_region="US", acquire_timeout_s=5)

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture
async def crm(make_crm: Callable[..., Awaitable[CrmReader]], crm_database: str) -> CrmReader:
    return await make_crm(crm_database)
