"""``crmsync syncer``: consumers, the outbox relay, and a small health/metrics server.

Many replicas may run at once (competing consumers on quorum queues); nothing here
assumes it is alone. On SIGTERM / SIGINT it stops taking messages, lets in-flight
handlers finish within ``shutdown_grace_s``, then closes in reverse order.

Its long-lived parts are supervised tasks (:mod:`shared.supervisor`): ``postgres``
(the pool), ``broker`` (connection and topology), ``outbox-relay``, ``consumers``
(which subscribes every queue once both are up) and ``hubspot-pusher`` (the sweep
for contacts due in HubSpot, ``hubspot/pusher.py``). Started while Postgres or RabbitMQ
is down, it serves ``/healthz`` and ``/readyz`` (503, saying what it waits for) and
starts consuming when they answer, without a restart.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import structlog
from aiohttp import web

from services.syncer.consumers.bookings import handle_booking
from services.syncer.consumers.credits import handle_credits
from services.syncer.consumers.expiry import handle_enrollments_expire
from services.syncer.consumers.hubspot_contacts import handle_contact_push
from services.syncer.consumers.hubspot_drift import handle_hubspot_drift_check
from services.syncer.consumers.hubspot_sync import handle_hubspot_batch_sync
from services.syncer.consumers.membership_actions import handle_membership_action
from services.syncer.consumers.orders import handle_order
from services.syncer.consumers.packages import handle_login, handle_refresh, handle_refresh_status
from services.syncer.consumers.packages_bulk import handle_packages_bulk_sync, handle_packages_chunk
from services.syncer.credits_batch import CreditBatcher
from services.syncer.deps import SyncerDeps
from services.syncer.hubspot.pusher import ContactPusher
from services.syncer.isolation import (
    bind_hook,
    check_queue_names,
    dead_letter_hooks,
    queue_db_connections,
    queue_deadline_s,
    queue_prefetch,
)
from services.syncer.packages.crm import CrmReader, create_crm_pool
from services.syncer.repcard.pull import handle_repcard_chunk, handle_repcard_sync
from shared import queues
from shared.broker import Broker
from shared.clients.commerce7 import Commerce7Client
from shared.clients.hubspot import HubSpotClient
from shared.clients.repcard import RepCardClient
from shared.clients.shopify import ShopifyClient
from shared.consumer import Consumer, Delivery, Handler
from shared.errors import BrokerUnavailableError
from shared.events import CloudEvent
from shared.jobs import (
    ENROLLMENTS_EXPIRE,
    HUBSPOT_BATCH_SYNC,
    HUBSPOT_DRIFT_CHECK,
    JOB_QUEUES,
    PACKAGES_BULK_SYNC,
    REPCARD_SYNC,
)
from shared.metrics import metrics_handler
from shared.outbox import OutboxRelay, OutboxRetry
from shared.postgres import Postgres
from shared.readiness import readyz_response
from shared.settings import SyncerSettings
from shared.supervisor import SupervisedTask, Supervisor
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)

DepsHandler = Callable[[CloudEvent, Delivery, SyncerDeps], Awaitable[None]]

# Longest wait between two Postgres probes while it is down, in seconds.
PROBE_BACKOFF_MAX_S = 5.0
# Seconds a consumer may take to stop beyond its handlers' grace period.
STOP_EXTRA_S = 5.0


async def _bounded(step: Awaitable[None], timeout_s: float) -> None:
    try:
        await asyncio.wait_for(step, timeout_s)
    except TimeoutError:
        log.warning("syncer.stop_step_timed_out", timeout_s=timeout_s)


def action_retry_delays(settings: SyncerSettings) -> tuple[float, ...]:
    """2**attempt units after attempt 1..max-1: 2, 4, 8, 16 minutes by default."""
    return tuple(2**a * settings.retry_unit_s for a in range(1, settings.action_max_attempts))


def handler_retry_delays(settings: SyncerSettings) -> tuple[float, ...]:
    """Retries of every other handler (database or CRM trouble): the same doubling,
    from a quarter unit: 15, 30, 60, 120 s by default."""
    return tuple(2**a * settings.retry_unit_s / 8 for a in range(1, settings.handler_max_attempts))


def consumer_plan(settings: SyncerSettings) -> list[tuple[QueueSpec, DepsHandler, int]]:
    """Each queue (with its retry delays), its handler, and its max attempts."""
    plan: list[tuple[QueueSpec, DepsHandler, int]] = [
        (
            queues.with_retries(queues.ORDERS, handler_retry_delays(settings)),
            handle_order,
            settings.handler_max_attempts,
        )
    ]
    for spec, app_handler in (
        (queues.CREDITS, handle_credits),
        (queues.BOOKINGS, handle_booking),
        (queues.HUBSPOT_CONTACTS, handle_contact_push),
        (queues.LOGINS, handle_login),
        (queues.PACKAGES_REFRESHES, handle_refresh),
        (queues.PACKAGES_REFRESH_STATUS_QUEUE, handle_refresh_status),
        (queues.PACKAGES_CHUNKS, handle_packages_chunk),
        (queues.REPCARD_CHUNKS, handle_repcard_chunk),
    ):
        plan.append(
            (
                queues.with_retries(spec, handler_retry_delays(settings)),
                app_handler,
                settings.handler_max_attempts,
            )
        )
    for spec in queues.MEMBERSHIP_ACTIONS.values():
        # Plus the short delay of an action whose customer's lease is busy (appended
        # last: the attempts' own delays keep their positions).
        delays = (*action_retry_delays(settings), settings.provider_lease_retry_s)
        plan.append(
            (
                queues.with_retries(spec, delays),
                handle_membership_action,
                settings.action_max_attempts,
            )
        )
    # Only jobs whose handler exists get a consumer; the scheduler declares the
    # others' queues, where their events wait visibly until a handler ships.
    job_handlers: tuple[tuple[str, DepsHandler], ...] = (
        (ENROLLMENTS_EXPIRE, handle_enrollments_expire),
        (HUBSPOT_BATCH_SYNC, handle_hubspot_batch_sync),
        (HUBSPOT_DRIFT_CHECK, handle_hubspot_drift_check),
        (PACKAGES_BULK_SYNC, handle_packages_bulk_sync),
        (REPCARD_SYNC, handle_repcard_sync),
    )
    for job, job_handler in job_handlers:
        plan.append(
            (
                queues.with_retries(JOB_QUEUES[job], handler_retry_delays(settings)),
                job_handler,
                settings.handler_max_attempts,
            )
        )
    return plan


def bind(handler: DepsHandler, deps: SyncerDeps) -> Handler:
    """``handler`` with its dependencies filled in, as the consumer wrapper calls it."""

    async def run(event: CloudEvent, delivery: Delivery) -> None:
        await handler(event, delivery, deps)

    return run


class Syncer:
    """The running syncer: :meth:`start`, then :meth:`stop`."""

    def __init__(self, settings: SyncerSettings) -> None:
        self.settings = settings
        self.plan = consumer_plan(settings)
        check_queue_names(settings, self.plan)
        self.supervisor = Supervisor.from_settings(settings)
        self.postgres = Postgres(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            probe_interval_s=settings.db_probe_interval_s,
            application_name="crmsync-syncer",
            acquire_timeout_s=settings.db_acquire_timeout_s,
            command_timeout_s=settings.db_command_timeout_s,
        )
        self.broker = Broker(
            settings.amqp_url.get_secret_value(),
            Topology(settings.amqp_namespace, group_size=settings.quorum_group_size()),
            [spec for spec, _, _ in self.plan],
            name="crmsync-syncer",
            publish_timeout_s=settings.publish_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        self.consumers: list[Consumer] = []
        self._http: aiohttp.ClientSession | None = None
        self._relay: OutboxRelay | None = None
        self._crm_pool: asyncpg.Pool | None = None
        self.deps: SyncerDeps | None = None
        self._consuming = asyncio.Event()

    async def start(self, *, wait: bool = True) -> None:
        """Start the supervised tasks.

        Args:
            wait: return once every queue is consumed (as long as Postgres and
                RabbitMQ take to answer); False returns at once (``serve``).
        """
        s = self.settings
        # min_size=0: the syncer starts (and serves everything else) while the CRM is down.
        self._crm_pool = await create_crm_pool(
            s.crm_database_url, s.crm_pool_max_size, s.crm_statement_timeout_ms
        )
        self._http = aiohttp.ClientSession()
        sup = self.supervisor
        sup.spawn("postgres", self.postgres.run, max_backoff_s=PROBE_BACKOFF_MAX_S)
        await self.broker.start(sup)
        sup.spawn("outbox-relay", self._run_relay)
        sup.spawn("consumers", self._run_consumers)
        sup.spawn("hubspot-pusher", self._run_pusher)
        if wait:
            await self.wait_consuming()

    async def wait_consuming(self) -> None:
        """Wait until every queue has its consumer."""
        await self._consuming.wait()

    def _deps(self, pool: asyncpg.Pool) -> SyncerDeps:
        s = self.settings
        assert self._http is not None and self._crm_pool is not None
        deps = SyncerDeps(
            settings=s,
            pool=pool,
            crm=CrmReader(self._crm_pool, default_region=s.phone_default_region),
            broker=self.broker,
            # One call per attempt: the retry queues own the backoff, so a provider
            # action's attempts count provider calls.
            shopify=ShopifyClient.from_settings(self._http, s, max_tries=1),
            commerce7=Commerce7Client.from_settings(self._http, s, max_tries=1),
            hubspot=HubSpotClient.from_settings(self._http, s),
            repcard=RepCardClient.from_settings(self._http, s, max_tries=s.repcard_max_tries),
        )
        deps.contact_pusher = ContactPusher.from_settings(pool, deps.hubspot, s)
        deps.credit_batcher = CreditBatcher(
            pool,
            queues.CREDITS.name,
            direct_limit=s.credits_direct_limit,
            max_batch=s.credits_max_batch,
        )
        return deps

    def _ensure_deps(self, pool: asyncpg.Pool) -> SyncerDeps:
        if self.deps is None:
            self.deps = self._deps(pool)
        return self.deps

    async def _run_pusher(self, task: SupervisedTask) -> None:
        """The HubSpot pusher's sweep (``hubspot/pusher.py``)."""
        pool = await self.postgres.wait()
        await self._ensure_deps(pool).contact_pusher.run(task)

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

    async def _run_consumers(self, task: SupervisedTask) -> None:
        """Subscribe every queue once Postgres and RabbitMQ answer, then watch: when
        the broker's connection goes (or a consumer's channel closes) raise, so the
        supervisor runs this again and the queues are subscribed on the broker's next
        connection (another node of a cluster)."""
        pool = await self.postgres.wait()
        await self.broker.wait_ready(timeout_s=None)
        session = self.broker.session()
        deps = self._ensure_deps(pool)
        if not self.consumers:
            self.consumers = self._make_consumers(deps)
        for consumer in self.consumers:
            if not consumer.consuming:
                await consumer.start()
        if not self._consuming.is_set():
            log.info("syncer.started", queues=[c.queue_name for c in self.consumers])
            self._consuming.set()
        task.running()
        watched: list[asyncio.Future[object]] = [asyncio.ensure_future(session)]
        watched += [asyncio.ensure_future(c.closed()) for c in self.consumers]
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            lost = watched[0].done()
        finally:
            for waiter in watched:
                waiter.cancel()
        gone = [c.queue_name for c in self.consumers if not c.consuming]
        raise BrokerUnavailableError(
            "connection lost: subscribing again" if lost else f"channel closed: {gone}"
        )

    def _make_consumers(self, deps: SyncerDeps) -> list[Consumer]:
        s = self.settings
        hooks = dead_letter_hooks()
        return [
            Consumer(
                self.broker,
                spec,
                bind(handler, deps),
                max_attempts=max_attempts,
                prefetch_count=queue_prefetch(s, spec),
                deadline_s=queue_deadline_s(s, spec),
                db_connections=queue_db_connections(s),
                on_dead_letter=bind_hook(hooks.get(spec.name), deps),
            )
            for spec, handler, max_attempts in self.plan
        ]

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace_s
        # First the task that watches the consumers: stopping them closes their
        # channels, which it would report as a failure and subscribe again.
        if "consumers" in self.supervisor:
            await self.supervisor["consumers"].stop()
        # Bounded: with RabbitMQ away, cancelling a consumer on a robust channel would
        # wait for the connection to come back.
        await asyncio.gather(
            *(_bounded(c.stop(grace), grace + STOP_EXTRA_S) for c in self.consumers)
        )
        if "hubspot-pusher" in self.supervisor:  # no sweep while the last pokes go
            await self.supervisor["hubspot-pusher"].stop()
        if self.deps is not None:  # what fails or is cut short stays due in Postgres
            await _bounded(self.deps.contact_pusher.drain(), grace)
        await self.supervisor.stop()
        await self.broker.close()
        if self._http is not None:
            await self._http.close()
        await self.postgres.close()
        if self._crm_pool is not None:
            await self._crm_pool.close()
        log.info("syncer.stopped")


def health_app(syncer: Syncer) -> web.Application:
    """``/healthz`` (the process is up), ``/readyz`` (every component running, see
    :mod:`shared.readiness`) and ``/metrics``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        return readyz_response(syncer.supervisor, "syncer")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def serve(settings: SyncerSettings, host: str, port: int) -> None:
    """Run until SIGTERM / SIGINT; never exits because Postgres or RabbitMQ is away."""
    syncer = Syncer(settings)
    runner = web.AppRunner(health_app(syncer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await syncer.start(wait=False)
        await stop.wait()
    finally:
        await syncer.stop()
        await runner.cleanup()
