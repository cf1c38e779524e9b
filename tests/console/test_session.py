"""Console sessions and queue figures without a browser: forged, expired and rotated
cookies, and the fallback from an unreachable management API to AMQP."""

from __future__ import annotations

import aiohttp

from services.scheduler.auth import Role
from services.scheduler.console.queues import management_endpoint, queue_report
from services.scheduler.console.session import new_session, read_session
from services.scheduler.keys import scheduler_key
from shared import queues
from tests.conftest import ADMIN_TOKEN, free_port, scheduler_settings
from tests.console.conftest import OPERATOR, VIEWER

TOKENS = [(Role.admin, b"admin-token"), (Role.viewer, b"viewer-token")]


def test_a_session_is_read_back_and_a_forged_one_is_not() -> None:
    session, cookie = new_session(Role.viewer, b"viewer-token", now=1000, ttl_s=60)
    assert read_session(cookie, TOKENS, now=1001) == session
    role, expiry, nonce, mac = cookie.split(".")
    assert read_session(f"admin.{expiry}.{nonce}.{mac}", TOKENS, now=1001) is None
    assert read_session(f"{role}.{int(expiry) + 999}.{nonce}.{mac}", TOKENS, now=1001) is None
    assert read_session(cookie, TOKENS, now=1060) is None  # expired
    assert read_session(cookie, [(Role.viewer, b"rotated")], now=1001) is None
    assert read_session("garbage", TOKENS, now=1001) is None
    assert "viewer-token" not in cookie


def test_the_management_endpoint_takes_the_amqp_credentials_and_vhost() -> None:
    found = management_endpoint(
        "http://127.0.0.1:15672/", "amqp://crm:s%40cret@mq.example:5672/prod,amqp://x@y/"
    )
    assert found == (
        "http://127.0.0.1:15672", "crm", "s@cret", "prod"
    )  # fmt: skip
    _, user, password, vhost = management_endpoint("http://ops:pw@mq:15672", "amqp://g:g@mq/")
    assert (user, password, vhost) == ("ops", "pw", "/")


async def test_an_unreachable_management_api_falls_back_to_passive_declares(
    make_scheduler_app, database, namespace
) -> None:
    settings = scheduler_settings(
        database,
        namespace,
        rabbitmq_management_url=f"http://127.0.0.1:{free_port()}",
        admin_viewer_token=VIEWER,
        admin_operator_token=OPERATOR,
    )
    _, app = await make_scheduler_app(settings, run_loop=False)
    broker = app[scheduler_key].broker
    await broker.wait_ready(30)
    work = broker.topology.queue(queues.CREDITS)
    async with aiohttp.ClientSession() as http:
        report = await queue_report(
            http, broker.connection, [work, f"{namespace}no.such.queue"],
            management_url=settings.rabbitmq_management_url.get_secret_value(),
            amqp_url=settings.amqp_url.get_secret_value(),
        )  # fmt: skip
    assert report.source == "amqp" and "management API not reachable" in report.note
    assert report.queues[work].exists and report.queues[work].messages == 0
    assert not report.queues[f"{namespace}no.such.queue"].exists
    assert ADMIN_TOKEN  # the admin role is configured too
