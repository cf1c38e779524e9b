"""The RabbitMQ connection and publisher (aio-pika, publisher confirms).

:class:`Broker` connects in the background under a supervisor (the task ``broker``),
so a service starts (and answers ``/healthz``) while RabbitMQ is down, reports
not-ready on ``/readyz``, and recovers without a restart:

- connecting fails (RabbitMQ down): the task raises, the supervisor retries with
  backoff and logs it once;
- a declaration fails (``PRECONDITION_FAILED``: a queue exists with other arguments):
  :class:`~shared.errors.TopologyMismatchError` naming the queue and the argument,
  retried the same way, shown in ``/readyz``;
- once up, aio-pika's robust connection reconnects on its own every
  ``reconnect_interval_s`` and restores channels, declarations and consumers; the task
  watches it, so ``/readyz`` shows ``broker`` restarting while it is away and one line
  is logged per change, not one per attempt.

Every publish waits for the broker's confirm (https://www.rabbitmq.com/docs/confirms)
and is ``mandatory``: a message no queue would take raises
:class:`~shared.errors.PublishRefusedError` instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared.errors import BrokerUnavailableError, PublishRefusedError
from shared.events import CloudEvent
from shared.metrics import BROKER_READY
from shared.supervisor import SupervisedTask, Supervisor, describe
from shared.topology import QueueSpec, Topology, mismatch_from

log = structlog.get_logger(__name__)

# The error of a message's first failed attempt, kept across its retries.
FIRST_ERROR_HEADER = "x-crmsync-first-error"

# Longest wait for one connection attempt, in seconds.
CONNECT_TIMEOUT_S = 5.0


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
        reconnect_interval_s: seconds between reconnect attempts once connected.
    """

    def __init__(
        self,
        url: str,
        topology: Topology,
        queues: Iterable[QueueSpec] = (),
        *,
        name: str = "crmsync",
        publish_timeout_s: float = 3.0,
        reconnect_interval_s: float = 2.0,
    ) -> None:
        self.url = url
        self.topology = topology
        self.queues = tuple(queues)
        self.name = name
        self.publish_timeout_s = publish_timeout_s
        self.reconnect_interval_s = reconnect_interval_s
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._default_exchange: AbstractExchange | None = None
        self._dead_exchange: AbstractExchange | None = None
        self._retry_exchanges: dict[str, AbstractExchange] = {}
        self._ready = asyncio.Event()
        self._linked = False
        self._task: SupervisedTask | None = None
        self._own_supervisor: Supervisor | None = None

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
            self._task = supervisor.spawn("broker", self.run)

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

    async def run(self, task: SupervisedTask) -> None:
        """Connect, declare, then watch the connection (the supervised task ``broker``).

        Raises:
            OSError, aio_pika.exceptions.AMQPError, TimeoutError: RabbitMQ refused or
                did not answer.
            TopologyMismatchError: a queue or exchange exists with other arguments.
        """
        connection = await aio_pika.connect_robust(
            self.url,
            client_properties={"connection_name": self.name},
            timeout=CONNECT_TIMEOUT_S,
            reconnect_interval=self.reconnect_interval_s,
        )
        events: asyncio.Queue[BaseException | None] = asyncio.Queue()
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self.topology.declare_exchanges(channel)
            await self.topology.declare(channel, self.queues)
            self._default_exchange = channel.default_exchange
            self._dead_exchange = await channel.get_exchange(self.topology.dead_exchange)
            self.connection = connection
            self._channel = channel
            # Called with the error when the link drops (or a restore fails), and
            # when it is back with everything restored.
            connection.close_callbacks.add(lambda _c, exc=None: events.put_nowait(exc or _Lost()))
            connection.reconnect_callbacks.add(lambda _c: events.put_nowait(None))
            self._ready.set()
            self._set_linked(True)
            log.info("broker.connected", connection_name=self.name)
            task.running()
            while True:
                lost = await events.get()
                if lost is None:
                    self._set_linked(True)
                    task.running()
                else:
                    self._set_linked(False)
                    task.failing(_reason(lost), kind=type(lost).__name__)
        finally:
            self._ready.clear()
            self._set_linked(False)
            self._retry_exchanges.clear()
            if self.connection is connection:
                self.connection = None
                self._channel = None
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
        except aio_pika.exceptions.PublishError as exc:  # Basic.Return (PublishError first:
            # it subclasses DeliveryError)
            raise PublishRefusedError(
                f"unroutable: no queue bound for routing key {routing_key!r} "
                f"on exchange {exchange.name!r}"
            ) from exc
        except aio_pika.exceptions.DeliveryError as exc:  # Basic.Nack
            raise PublishRefusedError(f"nacked by RabbitMQ: {exc}") from exc
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailableError(f"publish failed: {type(exc).__name__}: {exc}") from exc

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
