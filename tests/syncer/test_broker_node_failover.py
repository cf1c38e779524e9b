"""A syncer whose RabbitMQ node is ``kill -9``ed fails over to the next URL.

A second RabbitMQ node of the test's own (Debian's ``rabbitmq-server``, started by
``bench/_rabbit_cluster.py`` on free ports, with its own name, cookie and data; the
system node is untouched) is the syncer's first URL, the system node its second. The
two are independent, not clustered: what this proves is the client's side (connect
to another node, declare the topology there, subscribe again, consume), which is the
same against a cluster's next node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from bench._rabbit_cluster import LocalCluster, Node
from services.syncer.main import Syncer, health_app
from shared.broker_nodes import Nodes
from tests.conftest import AMQP_URL, eventually, intake_settings, start_app, syncer_settings
from tests.rabbit_node import needs_rabbitmq_server
from tests.rabbit_node import own_node as own_rabbit_node
from tests.syncer.test_supervised import FAST, balance, post_credits

pytestmark = [
    pytest.mark.timeout(300),
    needs_rabbitmq_server,
]


@pytest.fixture
async def own_node() -> AsyncIterator[tuple[LocalCluster, Node]]:
    """One RabbitMQ node on free ports, stopped and deleted afterwards."""
    async with own_rabbit_node("crmsync-test-rabbit") as node:
        yield node


async def queue_exists(url: str, name: str) -> bool:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


async def component(http, url: str, name: str) -> dict[str, Any]:
    async with http.get(f"{url}/readyz") as resp:
        body = await resp.json(content_type=None)
    return {"status": resp.status, **body["components"][name]}


async def test_a_syncer_whose_node_is_killed_consumes_again_on_the_next_url(
    http, own_node, database, namespace, sandbox, make_intake, db
) -> None:
    cluster, node = own_node
    key = "test-booking-api-key"
    settings = syncer_settings(
        database, namespace, sandbox, **FAST, amqp_url=f"{node.url},{AMQP_URL}"
    )
    syncer = Syncer(settings)
    syncer.broker.nodes = Nodes(settings.amqp_url.get_secret_value(), shuffle=False)
    runner, url = await start_app(health_app(syncer))
    try:
        await syncer.start(wait=False)
        await asyncio.wait_for(syncer.wait_consuming(), 60)
        assert syncer.broker.node == f"127.0.0.1:{node.amqp_port}"
        credits = f"{namespace}syncer.credits"
        assert await queue_exists(node.url, credits)
        assert not await queue_exists(AMQP_URL, credits)  # declared on the own node only

        on_node = await make_intake(
            intake_settings(namespace, amqp_url=node.url, api_keys={"booking-api": key})
        )
        assert await post_credits(http, on_node, key, version=1) == 202
        await eventually(lambda: balance(db, 1), timeout_s=20)

        await asyncio.to_thread(cluster.kill, node)  # kill -9, mid-consume

        async def on_system_node() -> bool:
            state = await component(http, url, "consumers")
            return state["status"] == 200 and syncer.broker.node == "127.0.0.1:5672"

        await eventually(on_system_node, timeout_s=30, interval_s=0.2)
        broker = await component(http, url, "broker")
        assert broker["state"] == "running" and broker["restarts"] >= 1
        assert "connection lost" in broker["last_error"]
        # The topology was declared again, on the node it now uses.
        assert await queue_exists(AMQP_URL, credits)
        assert syncer.supervisor["consumers"].restarts >= 1

        on_system = await make_intake(intake_settings(namespace, api_keys={"booking-api": key}))
        assert await post_credits(http, on_system, key, version=2) == 202
        await eventually(lambda: balance(db, 2), timeout_s=20)
    finally:
        await syncer.stop()
        await runner.cleanup()
