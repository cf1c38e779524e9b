"""The RabbitMQ connection and publisher (aio-pika, publisher confirms).

:class:`Broker` connects in the background under a supervisor (the task ``broker``),
so a service starts (and answers ``/healthz``) while RabbitMQ is down, reports
not-ready on ``/readyz``, and recovers without a restart:

- ``url`` may list several nodes (comma-separated, :mod:`shared.broker_nodes`): each
  attempt tries them in turn, so an unreachable first node does not keep a service
  from becoming ready on the second; one ``broker.connect_failed`` line per node tried;
- connecting fails on every node (RabbitMQ down): the task raises, the supervisor
  retries with jittered backoff (``backoff``'s generators, at most
  ``reconnect_interval_s`` apart) and logs the streak once;
- a declaration fails (``PRECONDITION_FAILED``: a queue exists with other arguments):
  :class:`~shared.errors.TopologyMismatchError` naming the queue and the argument,
  retried the same way, shown in ``/readyz``;
- once up, the task watches the connection and its publishing channel; when either
  closes (a node killed, a link cut) it raises ``connection lost: <node>``, and the
  next attempt connects to another node (the lost one is tried last) and declares the
  topology again there. Consumers follow :meth:`Broker.session` and subscribe again on
  the new connection (``services/syncer``); nothing is acked twice, nothing is lost:
  unacked messages go back to their queue when the old connection dies.

Every publish waits for the broker's confirm (https://www.rabbitmq.com/docs/confirms)
and is ``mandatory``: a message no queue would take raises
:class:`~shared.errors.PublishRefusedError` instead of vanishing. While no node is
connected, or none confirms within ``publish_timeout_s``, a publish raises
:class:`~shared.errors.BrokerUnavailableError` (intake answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiormq import spec

from shared.broker_nodes import Nodes
from shared.errors import BrokerUnavailableError, PublishRefusedError
from shared.events import CloudEvent
from shared.metrics import BROKER_READY
from shared.supervisor import SupervisedTask, Supervisor, describe
from shared.topology import QueueSpec, Topology, mismatch_from

log = structlog.get_logger(__name__)

# The error of a message's first failed attempt, kept across its retries.
FIRST_ERROR_HEADER = "x-crmsync-first-error"

# AMQP delivery mode 2: the broker writes the message to disk.
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)

# Longest wait for one connection attempt to one node, in seconds.
CONNECT_TIMEOUT_S = 5.0


class Broker:
    """One connection (to one node of ``url``), one confirmed publishing channel,
    topology declared on every (re)connect.

    Args:
        url: ``amqp://user:pass@host:5672/vhost``, or several comma-separated (a
            cluster's nodes), or a sequence of them.
        topology: names and declarations.
        queues: the work queues this service needs declared (consumers and the
            queues its events are routed to). Every service declares the whole
            topology it touches, so start order does not matter.
        name: shown as the connection name in the management console.
        publish_timeout_s: how long a publish may wait for its confirm.
        reconnect_interval_s: the longest wait, in seconds, between two connection
            attempts (the backoff, with jitter, starts lower: the supervisor's minimum).
        shuffle: start at a random node of ``url`` (False: at the first).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        topology: Topology,
        queues: Iterable[QueueSpec] = (),
        *,
        name: str = "crmsync",
        publish_timeout_s: float = 3.0,
        reconnect_interval_s: float = 2.0,
        shuffle: bool = True,
    ) -> None:
        self.nodes = Nodes(url, shuffle=shuffle)
        self.topology = topology
        self.queues = tuple(queues)
        self.name = name
        self.publish_timeout_s = publish_timeout_s
        self.reconnect_interval_s = reconnect_interval_s
        self.connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._raw_channel: aiormq.Channel | None = None
        self._exchange: AbstractExchange | None = None
        self._default_exchange: AbstractExchange | None = None
        self._dead_exchange: AbstractExchange | None = None
        self._retry_exchanges: dict[str, AbstractExchange] = {}
        self._ready = asyncio.Event()
        self._linked = False
        self._session: asyncio.Future[None] | None = None
        self._attempt = 0
        self._task: SupervisedTask | None = None
        self._own_supervisor: Supervisor | None = None

    @property
    def node(self) -> str | None:
        """``host:port`` of the node connected to (None while not connected)."""
        return self.nodes.current if self.ready else None

    @property
    def ready(self) -> bool:
        """True while connected, declared, with the publishing channel open."""
        return (
            self._ready.is_set()
            and self._linked
            and self.connection is not None
            and not self.connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    @property
    def task(self) -> SupervisedTask | None:
        """The supervised task ``broker`` (None before :meth:`start`)."""
        return self._task

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Start connecting in the background (the task ``broker`` of ``supervisor``,
        or of a supervisor of its own); returns at once."""
        if self._task is None:
            if supervisor is None:
                supervisor = self._own_supervisor = Supervisor()
            self._task = supervisor.spawn(
                "broker", self.run, max_backoff_s=self.reconnect_interval_s
            )

    async def wait_ready(self, timeout_s: float | None = 10.0) -> None:
        """Wait until connected and declared (``timeout_s`` None: as long as it takes).

        Raises:
            BrokerUnavailableError: not ready within ``timeout_s``; its message is
                the broker task's last error when there is one.
        """
        await self.start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError as exc:
            reason = self._task.last_error if self._task is not None else None
            raise BrokerUnavailableError(reason or "RabbitMQ not reachable") from exc

    def session(self) -> Awaitable[None]:
        """Done when the current connection is gone (at once when there is none):
        a consumer subscribed on it must subscribe again after :meth:`wait_ready`."""
        if self._session is None or not self.ready:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.shield(self._session)

    async def run(self, task: SupervisedTask) -> None:
        """Connect to a node, declare, then watch the connection (the supervised task
        ``broker``); raises when it is lost, so the next run connects again.

        Raises:
            BrokerUnavailableError: no node accepted the connection, or the connection
                (or the publishing channel) was lost.
            TopologyMismatchError: a queue or exchange exists with other arguments.
        """
        self._attempt += 1
        connection = await self.nodes.connect(
            name=self.name, timeout_s=CONNECT_TIMEOUT_S, attempt=self._attempt
        )
        node = self.nodes.current
        session: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        why: list[BaseException] = []

        def lost(_sender: object, exc: BaseException | None = None) -> None:
            # Called by the connection and by the publishing channel, with the error.
            if not session.done():
                why.append(exc or _Lost())
                session.set_result(None)
                # At once, not when this task next runs: /readyz must not say ready.
                self._set_linked(False)
                task.failing(
                    f"{_reason(why[0])} (node {node})", kind=BrokerUnavailableError.__name__
                )

        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self.topology.declare_exchanges(channel)
            await self.topology.declare(channel, self.queues)
            self._default_exchange = channel.default_exchange
            self._dead_exchange = await channel.get_exchange(self.topology.dead_exchange)
            connection.close_callbacks.add(lost)
            channel.close_callbacks.add(lost)
            self.connection = connection
            self._channel = channel
            self._raw_channel = _raw(await channel.get_underlay_channel())
            self._session = session
            self._ready.set()
            self._set_linked(True)
            log.info("broker.connected", connection_name=self.name, node=node)
            self._attempt = 0
            task.running()
            await session
            reason = _reason(why[0])
            log.warning("broker.connection_lost", node=node, error=reason)
            raise BrokerUnavailableError(f"{reason} (node {node})") from why[0]
        finally:
            self._ready.clear()
            self._set_linked(False)
            self._retry_exchanges.clear()
            if not session.done():
                session.set_result(None)
            if self.connection is connection:
                self.connection = None
                self._channel = None
                self._raw_channel = None
                self._session = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    def _set_linked(self, linked: bool) -> None:
        self._linked = linked
        BROKER_READY.set(1 if linked and self._ready.is_set() else 0)

    async def channel(self, prefetch_count: int) -> AbstractChannel:
        """A new channel (for a consumer) with ``prefetch_count`` unacked messages."""
        await self.wait_ready()
        assert self.connection is not None
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch_count)
        return channel

    async def publish(
        self, event: CloudEvent, routing_key: str | None = None, *, reply_to: str | None = None
    ) -> None:
        """Publish to the events exchange, persistent, and wait for the confirm.

        Args:
            event: the event; ``routing_key`` defaults to ``event.type``.
            reply_to: a queue the consumer should answer on (request/reply); the
                answer's ``correlation_id`` is this event's id.

        Raises:
            PublishRefusedError: RabbitMQ refused it: unroutable (no queue bound for
                the routing key) or nacked. A :class:`BrokerUnavailableError` too.
            BrokerUnavailableError: not connected, or no confirm within
                ``publish_timeout_s``. The caller decides (intake answers 503).
        """
        await self._publish(
            self._exchange, event, routing_key or event.type, attempt=1, reply_to=reply_to
        )

    async def reply(self, reply_to: str, request_id: str, body: bytes) -> None:
        """Answer a request on its ``reply_to`` queue (transient, JSON, no confirm wait
        beyond the broker's own): the requester may be gone, and that is fine."""
        if self._default_exchange is None or not self.ready:
            raise BrokerUnavailableError("not connected to RabbitMQ")
        message = aio_pika.Message(
            body=body, content_type="application/json", correlation_id=request_id
        )
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._default_exchange.publish(message, routing_key=reply_to, mandatory=False)
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailableError(f"reply failed: {exc}") from exc

    async def publish_retry(
        self,
        delay_s: float,
        queue: str,
        event: CloudEvent,
        *,
        attempt: int,
        first_error: str | None = None,
    ) -> None:
        """Send ``event`` back to ``queue`` after ``delay_s`` (its delay queue's TTL),
        carrying its first attempt's error in ``x-crmsync-first-error``."""
        name = self.topology.retry_queue(delay_s)
        exchange = self._retry_exchanges.get(name)
        if exchange is None:
            if self._channel is None or not self.ready:
                raise BrokerUnavailableError("not connected to RabbitMQ")
            try:
                exchange = await self._channel.get_exchange(name)
            except (aio_pika.exceptions.AMQPError, RuntimeError) as exc:
                raise BrokerUnavailableError(f"no retry exchange {name}: {exc}") from exc
            self._retry_exchanges[name] = exchange
        headers = {FIRST_ERROR_HEADER: first_error[:1000]} if first_error else {}
        await self._publish(exchange, event, queue, attempt, headers)

    async def publish_dead(
        self,
        queue: str,
        event: CloudEvent,
        *,
        attempt: int,
        error: str,
        first_error: str | None = None,
    ) -> None:
        """Send ``event`` to ``queue``'s dead-letter queue with the reason, the first
        attempt's error and the time in headers (``crmsync dead-letters show``)."""
        headers = {
            "x-crmsync-error": error[:1000],
            "x-crmsync-queue": queue,
            FIRST_ERROR_HEADER: (first_error or error)[:1000],
            "x-crmsync-dead-at": datetime.now(UTC).isoformat(),
        }
        await self._publish(self._dead_exchange, event, queue, attempt, headers)

    async def _publish(
        self,
        exchange: AbstractExchange | None,
        event: CloudEvent,
        routing_key: str,
        attempt: int,
        extra_headers: Mapping[str, Any] = {},
        reply_to: str | None = None,
    ) -> None:
        raw = self._raw_channel
        if exchange is None or raw is None or not self.ready:
            raise BrokerUnavailableError("not connected to RabbitMQ")
        headers = event.amqp_headers(attempt)
        headers.update(extra_headers)
        # aiormq's channel directly, as aio-pika's Exchange.publish calls it, without
        # building an aio_pika.Message first (issue 11: a fifth of a publish's CPU).
        properties = spec.Basic.Properties(
            content_type=event.datacontenttype,
            headers=headers,
            delivery_mode=PERSISTENT,
            correlation_id=event.correlationid,
            message_id=event.id,
            message_type=event.type,
            timestamp=event.time,
            reply_to=reply_to,
        )
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                # wait=False: queue the frames and wait for the confirm only, not for
                # the socket's drain while holding the channel's lock.
                confirm = await raw.basic_publish(
                    event.data,
                    exchange=exchange.name,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                    wait=False,
                )
        except TimeoutError as exc:
            raise BrokerUnavailableError("no publisher confirm in time") from exc
        except aiormq.exceptions.PublishError as exc:  # Basic.Return (PublishError first:
            # it subclasses DeliveryError)
            raise PublishRefusedError(
                f"unroutable: no queue bound for routing key {routing_key!r} "
                f"on exchange {exchange.name!r}"
            ) from exc
        except aiormq.exceptions.DeliveryError as exc:  # Basic.Nack
            raise PublishRefusedError(f"nacked by RabbitMQ: {exc}") from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailableError(f"publish failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(confirm, spec.Basic.Ack):  # a returned message, had it not raised
            raise PublishRefusedError(f"not confirmed by RabbitMQ: {type(confirm).__name__}")

    async def close(self) -> None:
        """Stop the broker task (which closes the connection)."""
        task, self._task = self._task, None
        if task is not None:
            await task.stop()
        self._own_supervisor = None
        self._ready.clear()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
            self.connection = None


class _Lost(Exception):
    """The connection closed without saying why."""

    def __str__(self) -> str:
        return "connection lost"


def _reason(exc: BaseException) -> str:
    """What the watch shows for a lost link or a failed restore."""
    mismatch = mismatch_from(exc)
    if mismatch is not None:
        return describe(mismatch)
    return f"connection lost: {describe(exc)}"


def _raw(channel: object) -> aiormq.Channel:
    """aio-pika's underlying aiormq channel, whose ``basic_publish`` takes ``wait``."""
    if not isinstance(channel, aiormq.Channel):
        raise TypeError(f"expected an aiormq.Channel, got {type(channel).__name__}")
    return channel
