"""The web console at ``/console``: server-rendered pages over the admin service.

Pages (jinja2 templates, one stylesheet, no script, no build step): the overview
(queues, jobs, provider actions, HubSpot budget), runs and one run, and the operations
pages. Log in with a role token; see :mod:`.access` for sessions and CSRF.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from services.scheduler.console import login, ops_views, views
from services.scheduler.console.access import LOGIN_PATH, PREFIX, console_auth
from services.scheduler.console.render import STATIC, environment, templates_key
from services.scheduler.console.views import console_http_key

__all__ = ["console_auth", "setup_console"]


def setup_console(app: web.Application) -> None:
    """Add the console's routes, templates and HTTP client to ``app``; the app's
    middlewares must include :func:`console_auth`."""
    app[templates_key] = environment()

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            app[console_http_key] = http
            yield

    app.cleanup_ctx.append(http_ctx)
    router = app.router
    router.add_get(PREFIX, views.overview)
    router.add_get(LOGIN_PATH, login.login_form)
    router.add_post(LOGIN_PATH, login.login)
    router.add_post(f"{PREFIX}/logout", login.logout)
    router.add_get(f"{PREFIX}/runs", views.runs)
    router.add_get(f"{PREFIX}/runs/{{id}}", views.one_run)
    router.add_post(f"{PREFIX}/jobs/{{name}}/run", views.run_now)
    router.add_get(f"{PREFIX}/dead-letters", ops_views.dead_letters)
    router.add_get(f"{PREFIX}/dead-letters/{{queue}}", ops_views.dead_queue)
    router.add_post(f"{PREFIX}/dead-letters/{{queue}}/replay", ops_views.replay)
    router.add_post(f"{PREFIX}/dead-letters/{{queue}}/purge", ops_views.purge)
    router.add_get(f"{PREFIX}/actions", ops_views.actions)
    router.add_post(f"{PREFIX}/actions/retry", ops_views.retry)
    router.add_get(f"{PREFIX}/trace", ops_views.trace_page)
    router.add_static(f"{PREFIX}/static", STATIC, append_version=False)
