"""One scheduler replica: the tick loop, the outbox relay, and pruning.

Run as many as you like. Ticks are claimed in Postgres (see :mod:`.ticks`), the
relay claims outbox rows with ``SKIP LOCKED``, and pruning takes an advisory lock, so
replicas never double anything; any one of them is enough to keep the schedule.

Each long-lived part is a supervised task (:mod:`shared.supervisor`): ``postgres``,
``broker``, ``outbox-relay`` and ``ticks``. A replica started while Postgres or
RabbitMQ is down serves its API (``/readyz`` 503) and starts ticking once Postgres
answers; a round that fails restarts the tick loop with backoff.
"""

from __future__ import annotations

import asyncio
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
from shared.outbox import OutboxRelay, OutboxRetry
from shared.postgres import Postgres
from shared.settings import SchedulerSettings
from shared.supervisor import SupervisedTask, Supervisor
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)

# Longest wait between two Postgres probes while it is down, in seconds: readiness
# (and ticking) resume within this of Postgres coming back.
_PROBE_BACKOFF_MAX_S = 5.0


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
            Topology(settings.amqp_namespace, group_size=settings.quorum_group_size()),
            routed.values(),
            name=name,
            publish_timeout_s=settings.publish_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        self.supervisor = Supervisor.from_settings(settings)
        self.postgres = Postgres(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            probe_interval_s=settings.db_probe_interval_s,
            application_name=name,
            acquire_timeout_s=settings.db_acquire_timeout_s,
            command_timeout_s=settings.db_command_timeout_s,
        )
        self._relay: OutboxRelay | None = None
        self._emitter: TickEmitter | None = None
        self._run_loop = True
        self._registered = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._last_prune: datetime | None = None
        # The clock time of the last round that completed (tests wait on it).
        self.checked_at: datetime | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool.

        Raises:
            DatabaseUnavailableError: Postgres has not answered since the start.
        """
        return self.postgres.pool

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.settings.run_retention_days)

    async def start(self, *, run_loop: bool = True, wait: bool = True) -> None:
        """Start the supervised tasks: ``postgres``, ``broker``, ``outbox-relay`` and
        ``ticks`` (which registers the jobs, then ticks if ``run_loop``). Events wait
        in the outbox while RabbitMQ is away; ticks do not.

        Args:
            run_loop: False registers the jobs but never ticks (tests call
                :meth:`round` themselves).
            wait: return only once Postgres answered and the jobs are registered
                (as long as that takes); False returns at once (``serve``).
        """
        sup = self.supervisor
        self._run_loop = run_loop
        sup.spawn("postgres", self.postgres.run, max_backoff_s=_PROBE_BACKOFF_MAX_S)
        await self.broker.start(sup)
        sup.spawn("outbox-relay", self._run_relay)
        sup.spawn("ticks", self._run_ticks)
        enabled = [j.name for j in self.jobs if j.enabled]
        log.info(
            "scheduler.started",
            # A long cron table (the benchmark's 1,000 jobs) is summed up.
            jobs=enabled if len(enabled) <= 20 else f"{len(enabled)} jobs",
            disabled=[j.name for j in self.jobs if not j.enabled][:20],
        )
        if wait:
            await self.wait_started()

    async def wait_started(self) -> None:
        """Wait until Postgres answered and the jobs are registered (after
        ``start(wait=False)``)."""
        await self._registered.wait()

    async def _run_relay(self, task: SupervisedTask) -> None:
        pool = await self.postgres.wait()
        if self._relay is None:
            s = self.settings
            self._relay = OutboxRelay(
                pool,
                self.broker,
                poll_s=s.outbox_poll_s,
                retry=OutboxRetry.from_settings(s),
            )
        await self._relay.run(task)

    async def _run_ticks(self, task: SupervisedTask) -> None:
        pool = await self.postgres.wait()
        if not self._registered.is_set():
            await register_jobs(pool, self.jobs, self.clock.now())
            self._emitter = TickEmitter(
                pool, self.jobs, source=self.settings.source, horizon=self.retention
            )
            self._registered.set()
        task.running()
        if not self._run_loop:
            await asyncio.Event().wait()  # registered; tests drive round() themselves
        while not self._stopping:
            self._idle.clear()
            try:
                await self.round()
                pause = self._sleep_s()
            except Exception:
                TICK_ROUND_FAILURES.inc()
                raise  # the supervisor logs it once and restarts the loop with backoff
            finally:
                self._idle.set()
            task.running()
            if self._stopping:
                break
            await self.clock.sleep(pause)
        await asyncio.Event().wait()  # stopping: the supervisor cancels us next

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

    async def stop(self) -> None:
        """Let an in-flight round finish (within ``shutdown_grace_s``), then stop the
        tasks (ticks, relay, broker, postgres) and close the pool."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_grace_s)
        except TimeoutError:
            log.warning("scheduler.round_cut_short", grace_s=self.settings.shutdown_grace_s)
        await self.supervisor.stop()
        await self.broker.close()
        await self.postgres.close()
        log.info("scheduler.stopped")
