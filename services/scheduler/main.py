"""``crmsync scheduler``: the tick loop and its admin API in one aiohttp process.

``create_app(settings) -> web.Application``; the replica (:class:`Scheduler`) is a
``cleanup_ctx``, so it starts with the app and stops, in-flight round first, when
``run_app`` drains on SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import structlog
from aiohttp import web

from services.scheduler.admin import setup_routes
from services.scheduler.auth import bearer_auth, role_tokens
from services.scheduler.clock import Clock
from services.scheduler.doctor import setup_doctor
from services.scheduler.jobs import Job
from services.scheduler.keys import scheduler_key
from services.scheduler.openapi import openapi_document
from services.scheduler.service import Scheduler
from shared.doctor import DoctorInputs
from shared.metrics import BROKER_READY, metrics_handler
from shared.problems import Problem, problem_middleware
from shared.settings import SchedulerSettings

log = structlog.get_logger(__name__)

# Largest admin request body, in bytes: parameters are a small JSON object.
MAX_BODY_BYTES = 65_536


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when Postgres answers and RabbitMQ is connected; 503 problem otherwise."""
    scheduler = request.app[scheduler_key]
    broker_ready = scheduler.broker.ready
    BROKER_READY.set(1 if broker_ready else 0)
    try:
        await scheduler.pool.fetchval("SELECT 1")
    except Exception as exc:
        raise Problem(503, "Service Unavailable", f"Postgres: {type(exc).__name__}") from exc
    if not broker_ready:
        raise Problem(503, "Service Unavailable", "RabbitMQ is not reachable")
    return web.json_response({"status": "ready"})


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
        client_max_size=MAX_BODY_BYTES, middlewares=[problem_middleware, bearer_auth]
    )
    app[scheduler_key] = Scheduler(settings, jobs, clock)

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        if not role_tokens(settings):
            log.warning("scheduler.no_admin_token", hint="set CRMSYNC_ADMIN_TOKEN")
        await app[scheduler_key].start(run_loop=run_loop)
        yield
        await app[scheduler_key].stop()

    app.cleanup_ctx.append(scheduler_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi)
    setup_routes(app)
    setup_doctor(app, doctor)
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
