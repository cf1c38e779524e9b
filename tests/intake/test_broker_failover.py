"""Several AMQP URLs: an unreachable first node does not keep intake from becoming
ready on the second, and intake answers 503 (never 2xx) while no node confirms."""

from __future__ import annotations

import asyncio
import socket

from structlog.testing import capture_logs

from shared.broker import Broker
from shared.queues import ALL
from shared.topology import Topology
from tests.conftest import AMQP_URL, eventually, intake_settings
from tests.helpers import TcpProxy, post_shopify

FAST = {"supervisor_backoff_min_s": 0.05, "supervisor_backoff_max_s": 0.5}


def closed_port_url() -> str:
    """An AMQP URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


async def test_a_closed_first_url_is_skipped_and_the_broker_is_ready_on_the_second(
    namespace,
) -> None:
    closed = closed_port_url()
    broker = Broker(f"{closed},{AMQP_URL}", Topology(namespace), ALL, shuffle=False)
    with capture_logs() as logs:
        await broker.wait_ready(timeout_s=15)
    try:
        assert broker.ready and broker.node == "127.0.0.1:5672"
        failed = [e for e in logs if e["event"] == "broker.connect_failed"]
        # One line for the closed node, without a traceback; no restart needed.
        assert len(failed) == 1 and failed[0]["node"] == closed.split("@")[1].rstrip("/")
        assert "exc_info" not in failed[0]
        assert broker.task is not None and broker.task.restarts == 0
    finally:
        await broker.close()


async def test_intake_with_a_closed_first_url_answers_2xx_through_the_second(
    http, make_intake, namespace
) -> None:
    # The services start at a random node: whichever it is, intake becomes ready.
    url = await make_intake(
        intake_settings(namespace, amqp_url=f"{closed_port_url()}, {AMQP_URL}", **FAST)
    )
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 200
    status, _, _ = await post_shopify(http, url)
    assert status == 200


async def test_intake_answers_503_while_no_node_confirms_and_2xx_once_one_is_back(
    http, make_intake, namespace
) -> None:
    nodes = [TcpProxy(), TcpProxy()]
    for proxy in nodes:
        await proxy.start()
    urls = ",".join(proxy.url for proxy in nodes)
    settings = intake_settings(
        namespace, amqp_url=urls, publish_timeout_s=1.0, broker_reconnect_interval_s=0.3, **FAST
    )
    url = await make_intake(settings)
    status, _, _ = await post_shopify(http, url)
    assert status == 200

    ports = [proxy.port for proxy in nodes]
    for proxy in nodes:
        await proxy.cut()
    # Every answer while both nodes are away is a 503 problem; never a 2xx.
    statuses = []
    for _ in range(10):
        status, _, ctype = await post_shopify(http, url)
        statuses.append(status)
        assert ctype == "application/problem+json"
        await asyncio.sleep(0.1)
    assert set(statuses) == {503}, statuses
    async with http.get(f"{url}/readyz") as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 503 and body["components"]["broker"]["state"] == "restarting"
        assert "no RabbitMQ node reachable" in body["components"]["broker"]["last_error"]

    nodes[1].port = ports[1]
    await nodes[1].start()  # the second node is back; the first stays away

    async def accepted() -> bool:
        status, _, _ = await post_shopify(http, url)
        assert status in (200, 503), status
        return status == 200

    await eventually(accepted, timeout_s=20, interval_s=0.2)
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 200
    await nodes[1].cut()
