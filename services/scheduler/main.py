"""``crmsync scheduler``: the tick loop and its admin API in one aiohttp process.

``create_app(settings) -> web.Application``; the replica (:class:`Scheduler`) is a
``cleanup_ctx``, so it starts with the app and stops, in-flight round first, when
``run_app`` drains on SIGTERM. It starts without waiting for Postgres or RabbitMQ:
``/healthz`` answers at once, ``/readyz`` is 503 until both answer, and an admin
request that needs Postgres meanwhile gets a 503 problem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg
import structlog
from aiohttp import web

from services.scheduler.admin import setup_routes
from services.scheduler.auth import bearer_auth, role_tokens
from services.scheduler.clock import Clock
from services.scheduler.console import console_auth, setup_console
from services.scheduler.doctor import setup_doctor
from services.scheduler.jobs import Job
from services.scheduler.keys import scheduler_key
from services.scheduler.openapi import openapi_document
from services.scheduler.service import Scheduler
from shared.doctor import DoctorInputs
from shared.errors import DatabaseUnavailableError
from shared.metrics import metrics_handler
from shared.problems import Handler, Problem, problem_middleware
from shared.readiness import readyz_response
from shared.settings import SchedulerSettings

log = structlog.get_logger(__name__)

# Largest admin request body, in bytes: parameters are a small JSON object.
MAX_BODY_BYTES = 65_536


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 while Postgres, RabbitMQ, the relay and the tick loop run; else a 503
    problem, each with every component's state (:mod:`shared.readiness`)."""
    return readyz_response(request.app[scheduler_key].supervisor, "scheduler")


# Seconds a client should wait before asking again while Postgres is away.
RETRY_AFTER_S = 5


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Postgres not reachable (not yet, or not now): 503 with ``Retry-After``, not 500."""
    try:
        return await handler(request)
    except (
        DatabaseUnavailableError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        OSError,
    ) as exc:
        log.warning("admin.database_unavailable", path=request.path, error=type(exc).__name__)
        raise Problem(
            503,
            "Service Unavailable",
            "Postgres is not reachable; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[scheduler_key].jobs))


def create_app(
    settings: SchedulerSettings,
    *,
    jobs: Sequence[Job] | None = None,
    clock: Clock | None = None,
    run_loop: bool = True,
    doctor: DoctorInputs | None = None,
) -> web.Application:
    """Build the scheduler replica and its admin API.

    Args:
        settings: the service's settings.
        jobs: the cron table (default: from ``settings``).
        clock: the tick loop's time (default: the system clock).
        run_loop: False serves the API without ticking (tests).
        doctor: the settings ``GET /v1/doctor`` checks (default: from the environment).
    """
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[problem_middleware, bearer_auth, console_auth, database_unavailable],
    )
    app[scheduler_key] = Scheduler(settings, jobs, clock)

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        if not role_tokens(settings):
            log.warning("scheduler.no_admin_token", hint="set CRMSYNC_ADMIN_TOKEN")
        # Not waiting for Postgres: serve /healthz and /readyz (503) meanwhile.
        await app[scheduler_key].start(run_loop=run_loop, wait=False)
        yield
        await app[scheduler_key].stop()

    app.cleanup_ctx.append(scheduler_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi)
    setup_routes(app)
    setup_doctor(app, doctor)
    setup_console(app)
    return app


def serve(settings: SchedulerSettings, host: str, port: int) -> None:
    """Run until SIGTERM / SIGINT."""
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.shutdown_grace_s,
    )
