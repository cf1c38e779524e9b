"""RabbitMQ reachable, and every crmsync queue declared with the topology's arguments.

RabbitMQ has no AMQP call that lists a queue's arguments, but it compares them: a
declare whose arguments differ from the existing queue's is refused with
``PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue '...' in vhost
'/': received '20' but current is '5'``, naming the argument. So each queue is first
declared *passively* (exists? nothing is created), then, if it exists, declared with
the arguments :class:`~shared.topology.Topology` declares, which is a no-op when they
match. Nothing is created or changed either way. ``x-quorum-initial-group-size`` is not
compared: it only says how many replicas a queue got when it was created
(:func:`~shared.topology.declare_quorum_queue` declares it again with the queue's own
value). With several comma-separated URLs (a cluster), the first node that answers is
checked and the ones that did not are named.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from shared import queues
from shared.broker_nodes import split_urls
from shared.doctor.report import Check, Status
from shared.jobs import JOB_QUEUES
from shared.topology import Topology, declare_quorum_queue

CONNECT_TIMEOUT_S = 5.0
_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for queue '([^']+)'[^:]*: (.*)$")


def where(url: str) -> str:
    """``host:port/vhost`` of an AMQP URL, without user or password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5672}{parts.path or '/'}"


async def check_rabbitmq(url: str, namespace: str) -> list[Check]:
    """``rabbitmq`` (a connection) and ``queues`` (arguments of every work and dead-letter
    queue crmsync declares: the syncer's, the jobs')."""
    unreachable: list[str] = []
    connection: AbstractConnection | None = None
    for node_url in split_urls(url):
        try:
            connection = await aio_pika.connect(
                node_url,
                timeout=CONNECT_TIMEOUT_S,
                client_properties={"connection_name": "crmsync-doctor"},
            )
        except (OSError, aiormq.exceptions.AMQPError, TimeoutError) as exc:
            unreachable.append(f"{where(node_url)}: {type(exc).__name__}: {exc}")
            continue
        url = node_url
        break
    if connection is None:
        return [
            Check(
                "rabbitmq",
                "RabbitMQ",
                Status.fail,
                f"cannot connect to {'; '.join(unreachable)}",
                "check CRMSYNC_AMQP_URL and that RabbitMQ accepts connections",
            ),
            Check("queues", "RabbitMQ queues", Status.skip, "not checked: no connection"),
        ]
    try:
        amqp = getattr(connection.transport, "connection", None)  # aiormq's connection
        properties = getattr(amqp, "server_properties", None) or {}
        version = properties.get("version", "")
        version = version.decode() if isinstance(version, bytes) else str(version)
        broker = Check(
            "rabbitmq",
            "RabbitMQ",
            Status.warn if unreachable else Status.ok,
            f"{where(url)}, RabbitMQ {version or 'unknown version'}"
            + (f"; not reachable: {'; '.join(unreachable)}" if unreachable else ""),
            "a node of CRMSYNC_AMQP_URL is down; the services use the others"
            if unreachable
            else "",
        )
        return [broker, await _queues(connection, Topology(namespace))]
    finally:
        await connection.close()


async def _queues(connection: AbstractConnection, topology: Topology) -> Check:
    expected: dict[str, dict[str, Any]] = {}
    for spec in (*queues.ALL, *JOB_QUEUES.values()):
        expected[topology.queue(spec)] = topology.work_queue_arguments(spec)
        expected[topology.dead_queue(spec)] = topology.dead_queue_arguments()
    missing, wrong = [], []
    for name, arguments in expected.items():
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            missing.append(name)
            continue
        channel = await connection.channel()
        try:
            await declare_quorum_queue(channel, name, arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            wrong.append(_describe(name, exc))
            continue
        await channel.close()
    if wrong:
        return Check(
            "queues",
            "RabbitMQ queues",
            Status.fail,
            "; ".join(wrong),
            "a queue's arguments cannot change: once it is empty, delete it"
            " (rabbitmqctl delete_queue NAME) and restart the services, which"
            " declare it again",
        )
    if missing:
        return Check(
            "queues",
            "RabbitMQ queues",
            Status.warn,
            f"{len(missing)} of {len(expected)} not declared yet: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else ""),
            "start the syncer and scheduler once: every service declares its queues",
        )
    return Check(
        "queues",
        "RabbitMQ queues",
        Status.ok,
        f"{len(expected)} queues declared with crmsync's arguments",
    )


def _describe(name: str, exc: BaseException) -> str:
    """``syncer.orders: x-delivery-limit is '5' on the broker, crmsync declares '20'``."""
    text = str(exc.args[0] if exc.args else exc)
    match = _INEQUIVALENT.search(text)
    if match is None:
        return f"{name}: {text}"
    argument, rest = match.group(1), match.group(3)
    received, _, current = rest.partition(" but current is ")
    received = received.removeprefix("received ")
    return f"{name}: {argument} is {current} on the broker, crmsync declares {received}"
