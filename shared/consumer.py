"""The one wrapper that owns acks: "ack after the work is durable".

A handler knows nothing of AMQP. It takes the validated :class:`CloudEvent` and a
:class:`Delivery` and either returns (its work is committed) or raises:

============================  ==============================================
handler outcome               what the wrapper does
============================  ==============================================
returns                       ``ack``
``PermanentError``            publish to ``<queue>.dead`` with the reason, ``ack``
``TransientError``/other      publish to the retry queue for the next delay
                              with ``x-crmsync-attempt + 1`` (confirmed), ``ack``;
                              past ``max_attempts``: to ``<queue>.dead``
broker down meanwhile         ``nack(requeue=True)``: the message stays put
process dies                  nothing acked; RabbitMQ redelivers it
============================  ==============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.broker import Broker
from shared.errors import BrokerUnavailableError, InvalidEventError, PermanentError, TransientError
from shared.events import CloudEvent, attempt_of
from shared.metrics import HANDLER_SECONDS, MESSAGE_LAG_SECONDS, MESSAGES_HANDLED
from shared.topology import QueueSpec, pick_delay

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What a handler may know about how its event arrived.

    Attributes:
        queue: the full queue name (with namespace).
        attempt: 1 on first delivery, +1 per retry (our ``x-crmsync-attempt``).
        max_attempts: the attempt after which a failure dead-letters.
        redelivered: RabbitMQ's flag: a consumer died holding this message before.
    """

    queue: str
    attempt: int
    max_attempts: int
    redelivered: bool
    retry_delays_s: tuple[float, ...] = ()
    # Where a request/reply caller waits for the answer (None: nobody waits).
    reply_to: str | None = None

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts or not self.retry_delays_s

    def next_retry_delay_s(self, retry_after_s: float | None = None) -> float:
        """The delay, in seconds, the wrapper will wait before the next attempt."""
        return pick_delay(self.retry_delays_s, self.attempt, retry_after_s)


Handler = Callable[[CloudEvent, Delivery], Awaitable[None]]


class Consumer:
    """Consumes one queue with one handler.

    Args:
        broker: connection, topology and publisher (for retries and dead letters).
        spec: the queue.
        handler: the coroutine to run per event.
        max_attempts: handler attempts before the message is dead-lettered.
        prefetch_count: unacked messages in flight on this consumer.
    """

    def __init__(
        self,
        broker: Broker,
        spec: QueueSpec,
        handler: Handler,
        *,
        max_attempts: int,
        prefetch_count: int = 32,
    ) -> None:
        self.broker = broker
        self.spec = spec
        self.queue_name = broker.topology.queue(spec)
        self.handler = handler
        self.max_attempts = max_attempts
        self.prefetch_count = prefetch_count
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open a channel with the prefetch and start consuming."""
        self._channel = await self.broker.channel(self.prefetch_count)
        self._queue = await self._channel.get_queue(self.queue_name, ensure=True)
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop taking messages, let in-flight handlers finish within ``grace_s``."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace_s)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._handle(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        structlog.contextvars.bind_contextvars(
            queue=self.queue_name,
            routing_key=message.routing_key,
            message_id=message.message_id,
            event_id=message.message_id,
            correlation_id=message.correlation_id,
        )
        try:
            try:
                event = CloudEvent.from_amqp(message.headers, message.body, message.content_type)
            except InvalidEventError as exc:
                log.error("handler.invalid_envelope", error=str(exc))
                MESSAGES_HANDLED.labels(self.queue_name, "dead").inc()
                await message.reject(requeue=False)
                return
            structlog.contextvars.bind_contextvars(
                event_id=event.id, correlation_id=event.correlationid, event_type=event.type
            )
            delivery = Delivery(
                queue=self.queue_name,
                attempt=attempt_of(message.headers),
                max_attempts=self.max_attempts,
                redelivered=bool(message.redelivered),
                retry_delays_s=self.spec.retry_delays_s,
                reply_to=message.reply_to,
            )
            MESSAGE_LAG_SECONDS.labels(self.queue_name).observe(
                max(0.0, (datetime.now(UTC) - event.time).total_seconds())
            )
            await self._run_handler(message, event, delivery)
        finally:
            structlog.contextvars.unbind_contextvars(
                "queue", "routing_key", "message_id", "event_id", "correlation_id", "event_type"
            )

    async def _run_handler(
        self, message: AbstractIncomingMessage, event: CloudEvent, delivery: Delivery
    ) -> None:
        started = time.perf_counter()
        try:
            await self.handler(event, delivery)
        except PermanentError as exc:
            log.error("handler.failed_permanently", error=str(exc), attempt=delivery.attempt)
            await self._dead_letter(message, event, delivery, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transient, or a bug: both are retried, boundedly
            await self._retry(message, event, delivery, exc)
        else:
            MESSAGES_HANDLED.labels(self.queue_name, "ok").inc()
            await message.ack()
            log.debug("handler.succeeded")
        finally:
            HANDLER_SECONDS.labels(self.queue_name).observe(time.perf_counter() - started)

    async def _retry(
        self,
        message: AbstractIncomingMessage,
        event: CloudEvent,
        delivery: Delivery,
        exc: Exception,
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if delivery.is_last_attempt:
            log.error("handler.failed", error=error, attempt=delivery.attempt, final=True)
            await self._dead_letter(message, event, delivery, error)
            return
        retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
        delay = delivery.next_retry_delay_s(retry_after)
        log_method = log.warning if isinstance(exc, TransientError) else log.exception
        log_method("handler.retrying", error=error, attempt=delivery.attempt, delay_s=delay)
        try:
            await self.broker.publish_retry(
                delay, self.queue_name, event, attempt=delivery.attempt + 1
            )
        except BrokerUnavailableError:
            await self._requeue(message)
            return
        MESSAGES_HANDLED.labels(self.queue_name, "retried").inc()
        await message.ack()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, event: CloudEvent, delivery: Delivery, error: str
    ) -> None:
        try:
            await self.broker.publish_dead(
                self.queue_name, event, attempt=delivery.attempt, error=error
            )
        except BrokerUnavailableError:
            # Let RabbitMQ's own dead-lettering take it (reason "rejected", no text).
            with contextlib.suppress(Exception):
                await message.reject(requeue=False)
        else:
            await message.ack()
        MESSAGES_HANDLED.labels(self.queue_name, "dead").inc()

    async def _requeue(self, message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(Exception):
            await message.nack(requeue=True)
