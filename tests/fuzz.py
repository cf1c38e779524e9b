"""Schemathesis against the real apps: helpers shared by intake's and the admin API's runs.

Schemathesis calls the API synchronously (``requests``), so the apps under test run
on an event loop of their own in a background thread, on an ephemeral port, with the
real RabbitMQ namespace and database of the test. Every check is on; examples are
bounded (``FUZZ_EXAMPLES``, ``CRMSYNC_FUZZ_EXAMPLES`` overrides) so a run fits CI.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from hypothesis import HealthCheck, settings

from tests.conftest import start_app

# Generated examples per operation and phase.
FUZZ_EXAMPLES = int(os.environ.get("CRMSYNC_FUZZ_EXAMPLES", "25"))

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

Started = tuple[str, Callable[[], Awaitable[None]]]


@contextmanager
def serve_in_thread(start: Callable[[], Awaitable[Started]]) -> Iterator[str]:
    """Run ``start()`` (→ base URL, async stop) on a loop of its own; yield the URL."""
    loop = asyncio.new_event_loop()
    # Formatting a traceback in this thread while Hypothesis reads source files in the
    # main one has crashed CPython 3.11; keep the loop's unhandled errors as text.
    unhandled: list[str] = []
    loop.set_exception_handler(
        lambda _, context: unhandled.append(
            f"{context.get('message')}: {context.get('exception')!r}"
        )
    )
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["url"], ready["stop"] = loop.run_until_complete(start())
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fuzz-app", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in ready:
        raise ready["error"]
    try:
        yield ready["url"]
    finally:
        asyncio.run_coroutine_threadsafe(ready["stop"](), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        if unhandled:
            print("unhandled in the app loop:", *unhandled[:20], sep="\n  ")


def fuzz_config(schemes: dict[str, dict[str, str]]) -> Any:
    """Schemathesis' configuration: every check on (its default), credentials per
    security scheme of the document, so it can also leave them out on purpose."""
    from schemathesis.config import SchemathesisConfig

    return SchemathesisConfig.from_dict({"auth": {"openapi": schemes}})


async def run_app(app: Any) -> Started:
    runner, url = await start_app(app)
    return url, runner.cleanup


class ShopifyHmac(requests.auth.AuthBase):
    """Signs the body as Shopify does, when the request carries the HMAC header at all.

    A case that leaves the header out or empty (to check it is required) is sent so.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if r.headers.get("X-Shopify-Hmac-Sha256"):
            body = r.body or b""
            raw = body.encode() if isinstance(body, str) else body
            digest = hmac.new(self.secret.encode(), raw, hashlib.sha256).digest()
            r.headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(digest).decode()
        return r


def pytest9_node_id(request: Any) -> None:
    """Schemathesis 4.32's lazy schemas read and write ``Node._nodeid``, which pytest 9
    no longer has; give the node one (call from an autouse fixture)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
