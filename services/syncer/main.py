"""``crmsync syncer``: consumers, the outbox relay, and a small health/metrics server.

Many replicas may run at once (competing consumers on quorum queues); nothing here
assumes it is alone. On SIGTERM / SIGINT it stops taking messages, lets in-flight
handlers finish within ``shutdown_grace_s``, then closes in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import structlog
from aiohttp import web

from services.syncer.consumers.bookings import handle_booking
from services.syncer.consumers.credits import handle_credits
from services.syncer.consumers.expiry import handle_enrollments_expire
from services.syncer.consumers.hubspot_contacts import flush_contact_pushes, handle_contact_push
from services.syncer.consumers.hubspot_sync import handle_hubspot_batch_sync
from services.syncer.consumers.membership_actions import handle_membership_action
from services.syncer.consumers.orders import handle_order
from services.syncer.consumers.packages import handle_login, handle_refresh, handle_refresh_status
from services.syncer.consumers.packages_bulk import handle_packages_bulk_sync, handle_packages_chunk
from services.syncer.deps import SyncerDeps
from services.syncer.isolation import (
    bind_hook,
    check_queue_names,
    dead_letter_hooks,
    queue_db_connections,
    queue_deadline_s,
    queue_prefetch,
)
from services.syncer.packages.crm import CrmReader, create_crm_pool
from shared import queues
from shared.broker import Broker
from shared.clients.commerce7 import Commerce7Client
from shared.clients.hubspot import MAX_BATCH_INPUTS, HubSpotClient
from shared.clients.shopify import ShopifyClient
from shared.coalesce import Coalescer
from shared.consumer import Consumer, Delivery, Handler
from shared.db import create_pool
from shared.events import CloudEvent
from shared.jobs import ENROLLMENTS_EXPIRE, HUBSPOT_BATCH_SYNC, JOB_QUEUES, PACKAGES_BULK_SYNC
from shared.metrics import BROKER_READY, metrics_handler
from shared.outbox import OutboxRelay
from shared.settings import SyncerSettings
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)

DepsHandler = Callable[[CloudEvent, Delivery, SyncerDeps], Awaitable[None]]


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
    ):
        plan.append(
            (
                queues.with_retries(spec, handler_retry_delays(settings)),
                app_handler,
                settings.handler_max_attempts,
            )
        )
    for spec in queues.MEMBERSHIP_ACTIONS.values():
        plan.append(
            (
                queues.with_retries(spec, action_retry_delays(settings)),
                handle_membership_action,
                settings.action_max_attempts,
            )
        )
    # Only jobs whose handler exists get a consumer; the scheduler declares the
    # others' queues, where their events wait visibly until a handler ships.
    job_handlers: tuple[tuple[str, DepsHandler], ...] = (
        (ENROLLMENTS_EXPIRE, handle_enrollments_expire),
        (HUBSPOT_BATCH_SYNC, handle_hubspot_batch_sync),
        (PACKAGES_BULK_SYNC, handle_packages_bulk_sync),
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
        self.broker = Broker(
            settings.amqp_url.get_secret_value(),
            Topology(settings.amqp_namespace),
            [spec for spec, _, _ in self.plan],
            name="crmsync-syncer",
            publish_timeout_s=settings.publish_timeout_s,
        )
        self.consumers: list[Consumer] = []
        self._http: aiohttp.ClientSession | None = None
        self._relay: OutboxRelay | None = None
        self._crm_pool: asyncpg.Pool | None = None
        self.deps: SyncerDeps | None = None

    async def start(self) -> None:
        s = self.settings
        pool = await create_pool(
            s.database_url,
            min_size=s.db_pool_min_size,
            max_size=s.db_pool_max_size,
            acquire_timeout_s=s.db_acquire_timeout_s,
            command_timeout_s=s.db_command_timeout_s,
        )
        # min_size=0: the syncer starts (and serves everything else) while the CRM is down.
        self._crm_pool = await create_crm_pool(
            s.crm_database_url, s.crm_pool_max_size, s.crm_statement_timeout_ms
        )
        self._http = aiohttp.ClientSession()
        self.deps = SyncerDeps(
            settings=s,
            pool=pool,
            crm=CrmReader(self._crm_pool, default_region=s.phone_default_region),
            broker=self.broker,
            # One call per attempt: the retry queues own the backoff, so a provider
            # action's attempts count provider calls.
            shopify=ShopifyClient.from_settings(self._http, s, max_tries=1),
            commerce7=Commerce7Client.from_settings(self._http, s, max_tries=1),
            hubspot=HubSpotClient.from_settings(self._http, s),
        )
        deps = self.deps
        deps.contact_pushes = Coalescer(
            lambda ids: flush_contact_pushes(deps, ids),
            max_batch=MAX_BATCH_INPUTS,
            window_s=s.hubspot_push_window_s,
        )
        await self.broker.wait_ready(timeout_s=60)
        self._relay = OutboxRelay(pool, self.broker, poll_s=s.outbox_poll_s)
        await self._relay.start()
        hooks = dead_letter_hooks()
        for spec, handler, max_attempts in self.plan:
            consumer = Consumer(
                self.broker,
                spec,
                bind(handler, self.deps),
                max_attempts=max_attempts,
                prefetch_count=queue_prefetch(s, spec),
                deadline_s=queue_deadline_s(s, spec),
                db_connections=queue_db_connections(s),
                on_dead_letter=bind_hook(hooks.get(spec.name), self.deps),
            )
            await consumer.start()
            self.consumers.append(consumer)
        log.info("syncer.started", queues=[c.queue_name for c in self.consumers])

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop(self.settings.shutdown_grace_s) for c in self.consumers))
        pushes = getattr(self.deps, "contact_pushes", None)
        if pushes is not None:
            await pushes.drain()
        if self._relay is not None:
            await self._relay.stop()
        await self.broker.close()
        if self._http is not None:
            await self._http.close()
        if self.deps is not None:
            await self.deps.pool.close()
        if self._crm_pool is not None:
            await self._crm_pool.close()
        log.info("syncer.stopped")


def health_app(syncer: Syncer) -> web.Application:
    """``/healthz``, ``/readyz`` (broker connected) and ``/metrics``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready = syncer.broker.ready
        BROKER_READY.set(1 if ready else 0)
        return web.json_response(
            {"status": "ready" if ready else "broker unreachable"}, status=200 if ready else 503
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def serve(settings: SyncerSettings, host: str, port: int) -> None:
    """Run until SIGTERM / SIGINT."""
    syncer = Syncer(settings)
    runner = web.AppRunner(health_app(syncer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(syncer.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await stopped
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    finally:
        await syncer.stop()
        await runner.cleanup()
