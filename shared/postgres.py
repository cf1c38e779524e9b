"""The service's Postgres pool, opened in the background and watched.

A syncer or scheduler started while Postgres is down must not exit: it serves
``/healthz`` (200) and ``/readyz`` (503) and becomes ready when Postgres answers,
without a restart. :meth:`Postgres.run` is the supervised task ``postgres``: it opens
the pool (raising, so the supervisor retries with backoff, while Postgres refuses),
then probes it every ``probe_interval_s``; a failed probe raises too, so ``/readyz``
shows ``postgres`` restarting, with the error, until Postgres is back. Everything that
needs the pool waits for it with :meth:`Postgres.wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from shared.db import create_pool
from shared.errors import DatabaseUnavailableError
from shared.supervisor import SupervisedTask

# Longest wait for one connection attempt of the pool, in seconds (asyncpg's own
# default is 60: a host that drops packets would hold the first attempt that long).
OPEN_TIMEOUT_S = 10.0


class Postgres:
    """Opens and probes one pool.

    Args:
        dsn: ``postgresql://user@host:5432/db``.
        min_size: connections kept open.
        max_size: connections at most.
        probe_interval_s: seconds between two ``SELECT 1`` once open.
        probe_timeout_s: a probe slower than this counts as a failure.
        application_name: shown in ``pg_stat_activity`` (``crmsync-syncer``).
        pool_kwargs: passed on to :func:`shared.db.create_pool`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 2.0,
        application_name: str = "crmsync",
        **pool_kwargs: Any,
    ) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.pool_kwargs = pool_kwargs
        self.pool_kwargs.setdefault("server_settings", {"application_name": application_name})
        self._pool: asyncpg.Pool | None = None
        self._opened = asyncio.Event()

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool.

        Raises:
            DatabaseUnavailableError: not opened yet (Postgres has not answered).
        """
        if self._pool is None:
            raise DatabaseUnavailableError("Postgres has not answered yet")
        return self._pool

    @property
    def opened(self) -> bool:
        return self._pool is not None

    async def wait(self) -> asyncpg.Pool:
        """The pool, once it is open (waits as long as it takes)."""
        await self._opened.wait()
        assert self._pool is not None
        return self._pool

    async def run(self, task: SupervisedTask) -> None:
        """Open the pool, then probe it forever (the supervised task ``postgres``).

        Raises:
            OSError, asyncpg.PostgresError, TimeoutError, ...: Postgres did not answer;
                the supervisor retries after its backoff.
        """
        if self._pool is None:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                self._pool = await create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size, **self.pool_kwargs
                )
            self._opened.set()
        while True:
            async with asyncio.timeout(self.probe_timeout_s):
                await self._pool.fetchval("SELECT 1")
            task.running()
            await asyncio.sleep(self.probe_interval_s)

    async def close(self) -> None:
        """Close the pool (after the tasks that use it have stopped)."""
        pool, self._pool = self._pool, None
        self._opened.clear()
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 10)
