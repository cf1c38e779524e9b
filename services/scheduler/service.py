"""One scheduler replica: the tick loop, the outbox relay, and pruning.

Run as many as you like. Ticks are claimed in Postgres (see :mod:`.ticks`), the
relay claims outbox rows with ``SKIP LOCKED``, and pruning takes an advisory lock, so
replicas never double anything; any one of them is enough to keep the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import structlog

from services.scheduler.clock import Clock, SystemClock
from services.scheduler.history import prune_history
from services.scheduler.jobs import Job, job_table
from services.scheduler.metrics import TICK_ROUND_FAILURES
from services.scheduler.ticks import TickEmitter, TickReport, register_jobs
from shared import queues
from shared.broker import Broker
from shared.db import create_pool
from shared.outbox import OutboxRelay
from shared.settings import SchedulerSettings
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)


class Scheduler:
    """A replica: :meth:`start`, then :meth:`stop`.

    Args:
        settings: the service's settings.
        jobs: the cron table (default: :func:`job_table` of ``settings``).
        clock: time for the tick loop (default: the system clock).
        name: the RabbitMQ connection name.
    """

    def __init__(
        self,
        settings: SchedulerSettings,
        jobs: Sequence[Job] | None = None,
        clock: Clock | None = None,
        *,
        name: str = "crmsync-scheduler",
    ) -> None:
        self.settings = settings
        self.jobs = list(jobs if jobs is not None else job_table(settings))
        self.jobs_by_name = {j.name: j for j in self.jobs}
        self.clock: Clock = clock or SystemClock()
        # Every queue our events may be routed to, so each publish is routable: the
        # jobs' queues and the provider actions the relay also carries.
        routed: dict[str, QueueSpec] = {q.name: q for q in queues.ALL}
        routed |= {j.queue.name: j.queue for j in self.jobs}
        self.broker = Broker(
            settings.amqp_url.get_secret_value(),
            Topology(settings.amqp_namespace),
            routed.values(),
            name=name,
            publish_timeout_s=settings.publish_timeout_s,
        )
        self._pool: asyncpg.Pool | None = None
        self._relay: OutboxRelay | None = None
        self._emitter: TickEmitter | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._stopping = False
        self._last_prune: datetime | None = None
        # The clock time of the last round that completed (tests wait on it).
        self.checked_at: datetime | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("scheduler not started")
        return self._pool

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.settings.run_retention_days)

    async def start(self, *, run_loop: bool = True) -> None:
        """Open the pool, start the broker (in the background) and the relay, register
        the jobs, and (``run_loop``) start ticking. Events wait in the outbox while
        RabbitMQ is away; ticks do not."""
        s = self.settings
        self._pool = await create_pool(
            s.database_url, min_size=s.db_pool_min_size, max_size=s.db_pool_max_size
        )
        await self.broker.start()
        self._relay = OutboxRelay(self._pool, self.broker, poll_s=s.outbox_poll_s)
        await self._relay.start()
        await register_jobs(self._pool, self.jobs, self.clock.now())
        self._emitter = TickEmitter(self._pool, self.jobs, source=s.source, horizon=self.retention)
        if run_loop:
            self._task = asyncio.create_task(self._run(), name="scheduler-ticks")
        enabled = [j.name for j in self.jobs if j.enabled]
        log.info(
            "scheduler.started",
            # A long cron table (the benchmark's 1,000 jobs) is summed up.
            jobs=enabled if len(enabled) <= 20 else f"{len(enabled)} jobs",
            disabled=[j.name for j in self.jobs if not j.enabled][:20],
        )

    async def round(self) -> TickReport:
        """One round at the clock's now: emit what is due, prune when it is time."""
        assert self._emitter is not None
        now = self.clock.now()
        report = await self._emitter.emit_due(now)
        if self._last_prune is None or now - self._last_prune >= timedelta(
            seconds=self.settings.prune_interval_s
        ):
            self._last_prune = now
            pruned = await prune_history(self.pool, older_than=now - self.retention)
            if pruned is not None and (pruned.job_runs or pruned.processed_messages):
                log.info(
                    "history.pruned",
                    job_runs=pruned.job_runs,
                    processed_messages=pruned.processed_messages,
                )
        self.checked_at = now
        return report

    def _sleep_s(self) -> float:
        assert self._emitter is not None
        poll = self.settings.tick_poll_s
        due = self._emitter.next_due()
        if due is None:
            return poll
        return min(poll, max(0.0, (due - self.clock.now()).total_seconds()))

    async def _run(self) -> None:
        while not self._stopping:
            self._busy = True
            try:
                await self.round()
                pause = self._sleep_s()
            except Exception:  # the database is away, most likely: try again soon
                TICK_ROUND_FAILURES.inc()
                log.exception("scheduler.round_failed")
                pause = self.settings.tick_poll_s
            finally:
                self._busy = False
            if self._stopping:
                break
            await self.clock.sleep(pause)

    async def stop(self) -> None:
        """Let an in-flight round finish (within ``shutdown_grace_s``), then close."""
        self._stopping = True
        if self._task is not None:
            if self._busy:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(
                        asyncio.shield(self._task), self.settings.shutdown_grace_s
                    )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._relay is not None:
            await self._relay.stop()
        await self.broker.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        log.info("scheduler.stopped")
