"""CRMSYNC_QUORUM_INITIAL_GROUP_SIZE: set, or one replica per node of CRMSYNC_AMQP_URL;
passed to RabbitMQ only when a queue is created, and never compared."""

from __future__ import annotations

import aio_pika
import pytest
from pydantic import ValidationError

from shared import queues
from shared.doctor.broker import check_rabbitmq
from shared.doctor.report import Status
from shared.jobs import JOB_QUEUES
from shared.settings import CommonSettings
from shared.topology import GROUP_SIZE_ARGUMENT, Topology
from tests.conftest import AMQP_URL

THREE_NODES = "amqp://u:p@rmq-0:5672/,amqp://u:p@rmq-1:5672/,amqp://u:p@rmq-2:5672/"


def test_the_default_is_the_number_of_nodes_in_the_url_list() -> None:
    assert CommonSettings(_env_file=None, amqp_url=THREE_NODES).quorum_group_size() == 3
    assert CommonSettings(_env_file=None, amqp_url="amqp://a/, amqp://b/,").quorum_group_size() == 2
    assert CommonSettings(_env_file=None, amqp_url="amqp://a/").quorum_group_size() == 1


def test_the_setting_wins_and_an_empty_variable_means_the_default(monkeypatch) -> None:
    monkeypatch.setenv("CRMSYNC_AMQP_URL", THREE_NODES)
    monkeypatch.setenv("CRMSYNC_QUORUM_INITIAL_GROUP_SIZE", "5")
    assert CommonSettings(_env_file=None).quorum_group_size() == 5
    monkeypatch.setenv("CRMSYNC_QUORUM_INITIAL_GROUP_SIZE", "")
    assert CommonSettings(_env_file=None).quorum_group_size() == 3


def test_a_group_size_below_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="quorum_initial_group_size"):
        CommonSettings(_env_file=None, quorum_initial_group_size=0)


async def declared_with(channel, name: str, arguments: dict) -> bool:
    """Does RabbitMQ take a plain redeclare of ``name`` with exactly ``arguments``?"""
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        assert GROUP_SIZE_ARGUMENT in str(exc)
        await channel.reopen()
        return False
    return True


async def test_the_group_size_is_passed_only_when_a_queue_is_created(namespace) -> None:
    topology = Topology(namespace, group_size=1)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        orders = topology.queue(queues.ORDERS)
        order_args = topology.work_queue_arguments(queues.ORDERS)
        # An older release created syncer.orders without the argument.
        await channel.declare_queue(orders, durable=True, arguments=order_args)

        await topology.declare(channel, [queues.ORDERS, queues.CREDITS])

        credits = topology.queue(queues.CREDITS)
        credit_args = topology.work_queue_arguments(queues.CREDITS)
        assert await declared_with(channel, credits, {**credit_args, GROUP_SIZE_ARGUMENT: 1})
        assert not await declared_with(channel, credits, credit_args)
        assert await declared_with(channel, orders, order_args)  # left as it was
        # Every later declaration, with any group size or none, takes both as they are.
        for again in (Topology(namespace), Topology(namespace, group_size=3)):
            await again.declare(channel, [queues.ORDERS, queues.CREDITS])
    finally:
        await connection.close()


async def test_doctor_ignores_the_group_size_but_not_the_other_arguments(namespace) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await Topology(namespace, group_size=1).declare(
            channel, [*queues.ALL, *JOB_QUEUES.values()]
        )
        broker, checked = await check_rabbitmq(AMQP_URL, namespace)
        assert broker.status is Status.ok and checked.status is Status.ok, checked.detail

        credits = f"{namespace}syncer.credits"
        await channel.queue_delete(credits)
        arguments = Topology(namespace).work_queue_arguments(queues.CREDITS)
        await channel.declare_queue(
            credits,
            durable=True,
            arguments={**arguments, "x-delivery-limit": 5, GROUP_SIZE_ARGUMENT: 1},
        )
        _, checked = await check_rabbitmq(AMQP_URL, namespace)
        assert checked.status is Status.fail
        assert f"{credits}: x-delivery-limit is '5' on the broker" in checked.detail
    finally:
        await connection.close()
