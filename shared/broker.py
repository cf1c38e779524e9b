"""The RabbitMQ connection and publisher (aio-pika, publisher confirms).

:class:`Broker` connects in the background and keeps reconnecting, so a service
starts (and answers ``/healthz``) while RabbitMQ is down, reports not-ready on
``/readyz``, and recovers without a restart. Every publish waits for the broker's
confirm (https://www.rabbitmq.com/docs/confirms) and is ``mandatory``: a message no
queue would take raises instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared.errors import BrokerUnavailableError
from shared.events import CloudEvent
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)

# Ceiling on the wait between two connection attempts, in seconds.
RECONNECT_MAX_S = 5.0


class Broker:
    """One connection, one confirmed publishing channel, topology declared on connect.

    Args:
        url: ``amqp://user:pass@host:5672/vhost``.
        topology: names and declarations.
        queues: the work queues this service needs declared (consumers and the
            queues its events are routed to). Every service declares the whole
            topology it touches, so start order does not matter.
        name: shown as the connection name in the management console.
        publish_timeout_s: how long a publish may wait for its confirm.
    """

    def __init__(
        self,
        url: str,
        topology: Topology,
        queues: Iterable[QueueSpec] = (),
        *,
        name: str = "crmsync",
        publish_timeout_s: float = 3.0,
    ) -> None:
        self.url = url
        self.topology = topology
        self.queues = tuple(queues)
        self.name = name
        self.publish_timeout_s = publish_timeout_s
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._default_exchange: AbstractExchange | None = None
        self._dead_exchange: AbstractExchange | None = None
        self._retry_exchanges: dict[str, AbstractExchange] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """True while connected with the publishing channel open."""
        return (
            self._ready.is_set()
            and self.connection is not None
            and not self.connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._connect_forever(), name=f"{self.name}-connect")

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until connected and declared.

        Raises:
            BrokerUnavailableError: not ready within ``timeout_s``.
        """
        await self.start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError as exc:
            raise BrokerUnavailableError("RabbitMQ not reachable") from exc

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self.url, client_properties={"connection_name": self.name}, timeout=5
                )
            except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
                log.warning("broker.connect_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            self.connection = connection
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self.topology.declare_exchanges(channel)
            await self.topology.declare(channel, self.queues)
            self._default_exchange = channel.default_exchange
            self._dead_exchange = await channel.get_exchange(self.topology.dead_exchange)
            self._channel = channel
            self._ready.set()
            log.info("broker.connected", connection_name=self.name)
            return

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
            BrokerUnavailableError: not connected, nacked, unroutable, or no confirm
                within ``publish_timeout_s``. The caller decides (intake answers 503).
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
        self, delay_s: float, queue: str, event: CloudEvent, *, attempt: int
    ) -> None:
        """Send ``event`` back to ``queue`` after ``delay_s`` (its delay queue's TTL)."""
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
        await self._publish(exchange, event, queue, attempt)

    async def publish_dead(
        self, queue: str, event: CloudEvent, *, attempt: int, error: str
    ) -> None:
        """Send ``event`` to ``queue``'s dead-letter queue with the reason in a header."""
        headers = {"x-crmsync-error": error[:1000], "x-crmsync-queue": queue}
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
        if exchange is None or not self.ready:
            raise BrokerUnavailableError("not connected to RabbitMQ")
        headers = event.amqp_headers(attempt)
        headers.update(extra_headers)
        message = aio_pika.Message(
            body=event.data,
            headers=headers,
            content_type=event.datacontenttype,
            message_id=event.id,
            correlation_id=event.correlationid,
            type=event.type,
            timestamp=event.time,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            reply_to=reply_to,
        )
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await exchange.publish(message, routing_key=routing_key, mandatory=True)
        except TimeoutError as exc:
            raise BrokerUnavailableError("no publisher confirm in time") from exc
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailableError(f"publish failed: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._ready.clear()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
            self.connection = None
