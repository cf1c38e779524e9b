"""The console's queue figures from a live RabbitMQ management API.

The system node has no management plugin, so the test starts a node of its own
(Debian's ``rabbitmq-server`` via ``bench/_rabbit_cluster.py``, free ports, its own name,
cookie and data; the system node is untouched) with ``rabbitmq_management`` enabled.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import pytest

from bench._rabbit_cluster import Node
from services.scheduler.console.queues import queue_report
from tests.rabbit_node import free_port, needs_rabbitmq_server, own_node

pytestmark = [
    pytest.mark.timeout(300),
    needs_rabbitmq_server,
]


@pytest.fixture
async def managed_node() -> AsyncIterator[tuple[Node, str]]:
    """One RabbitMQ node with the management plugin: the node and the API's URL."""
    port = free_port()
    async with own_node("crmsync-test-rabbit-mgmt", management_port=port) as (_, node):
        yield node, f"http://127.0.0.1:{port}"


async def management_ready(http: aiohttp.ClientSession, url: str, deadline_s: float) -> None:
    """The plugin's listener starts a little after AMQP's: wait for ``/api/overview``."""
    end = time.monotonic() + deadline_s
    headers = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    while True:
        try:
            async with http.get(f"{url}/api/overview", headers=headers) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"no management API at {url}")
        await asyncio.sleep(0.5)


async def test_queue_figures_come_from_the_management_api_with_message_ages(
    managed_node: tuple[Node, str],
) -> None:
    node, management_url = managed_node
    connection = await aio_pika.connect(node.url)
    try:
        channel = await connection.channel()
        busy = await channel.declare_queue("console-mgmt.busy", durable=True)
        await channel.declare_queue("console-mgmt.idle", durable=True)
        for i in range(5):
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}", message_id=f"m-{i}"), routing_key=busy.name
            )
        names = ["console-mgmt.busy", "console-mgmt.idle", "console-mgmt.absent"]
        async with aiohttp.ClientSession() as http:
            await management_ready(http, management_url, deadline_s=120)
            # The management API's figures are refreshed every few seconds (its stats
            # interval), so poll until the five published messages show.
            end = time.monotonic() + 60
            while True:
                report = await queue_report(
                    http, connection, names, management_url=management_url, amqp_url=node.url
                )
                if report.queues["console-mgmt.busy"].messages == 5 or time.monotonic() > end:
                    break
                await asyncio.sleep(1)
    finally:
        await connection.close()

    assert report.source == "management"
    busy_figures = report.queues["console-mgmt.busy"]
    assert (busy_figures.messages, busy_figures.consumers) == (5, 0)
    idle = report.queues["console-mgmt.idle"]
    assert (idle.messages, idle.consumers) == (0, 0)
    assert report.queues["console-mgmt.absent"].exists is False


async def test_a_wrong_management_password_falls_back_to_amqp_and_says_so(
    managed_node: tuple[Node, str],
) -> None:
    node, management_url = managed_node
    wrong = management_url.replace("http://", "http://guest:wrong@")
    connection = await aio_pika.connect(node.url)
    try:
        async with aiohttp.ClientSession() as http:
            await management_ready(http, management_url, deadline_s=120)
            report = await queue_report(
                http, connection, ["amq.none"], management_url=wrong, amqp_url=node.url
            )
    finally:
        await connection.close()
    assert report.source == "amqp"
    assert "management API not reachable" in report.note
