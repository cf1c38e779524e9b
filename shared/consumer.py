"""The one wrapper that owns acks: "ack after the work is durable".

A handler knows nothing of AMQP. It takes the validated :class:`CloudEvent` and a
:class:`Delivery` and either returns (its work is committed) or raises:

=================================  =========================================================
handler outcome                    what the wrapper does
=================================  =========================================================
returns                            ``ack``
``PermanentError``, pydantic       publish to ``<queue>.dead`` with the reason at once, ``ack``
``ValidationError``
``TransientError``/other, or past  publish to the retry queue for the next delay with
its deadline (``deadline_s``)      ``x-crmsync-attempt + 1`` (confirmed), ``ack``; past
                                   ``max_attempts``: to ``<queue>.dead``
broker down meanwhile              ``nack(requeue=True)``: the message stays put
process dies                       nothing acked; RabbitMQ redelivers it
=================================  =========================================================

The acks of ``returns`` and of a retry publish go out once per event-loop iteration,
several in one ``basic.ack multiple=true`` frame where the tags allow it
(:mod:`shared.acks`); the others are sent as they happen.

Before a message goes to ``<queue>.dead`` the consumer's ``on_dead_letter`` hook (if
any) records it where people look (a job run ends ``failed``); if the hook itself fails
(the database is down), the message is retried later at the same attempt instead.

**Logs.** A retried failure is one line per attempt (``handler.retrying``), with no
traceback when its class is an expected one (:data:`EXPECTED_ERRORS`: TransientError,
asyncpg, broker and network errors, timeouts, the deadline). A traceback is logged at
the final failure (``handler.failed``) and the first time an unexpected exception class
is retried, at most once per queue and exception class every
:data:`TRACEBACK_INTERVAL_S`: with Postgres down, a syncer writes a line per message,
not a traceback per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from shared.acks import AckBatcher
from shared.broker import FIRST_ERROR_HEADER, Broker
from shared.db import connection_share
from shared.delivery import Delivery
from shared.errors import BrokerUnavailableError, InvalidEventError, PermanentError, TransientError
from shared.events import CloudEvent, attempt_of, describe_validation_error
from shared.handler_failures import (
    CHANNEL_GONE,
    EXPECTED_ERRORS,
    TRACEBACK_INTERVAL_S,
    HandlerDeadlineError,
    TracebackBudget,
)
from shared.metrics import HANDLER_SECONDS, MESSAGE_LAG_SECONDS, MESSAGES_HANDLED
from shared.topology import QueueSpec

log = structlog.get_logger(__name__)

__all__ = [
    "EXPECTED_ERRORS",
    "TRACEBACK_INTERVAL_S",
    "Consumer",
    "DeadLetterHook",
    "Delivery",
    "Handler",
    "HandlerDeadlineError",
]


Handler = Callable[[CloudEvent, Delivery], Awaitable[None]]
# Called with the event, its delivery and the reason before it goes to ``<queue>.dead``.
DeadLetterHook = Callable[[CloudEvent, Delivery, str], Awaitable[None]]


class Consumer:
    """Consumes one queue with one handler.

    Args:
        broker: connection, topology and publisher (for retries and dead letters).
        spec: the queue.
        handler: the coroutine to run per event.
        max_attempts: handler attempts before the message is dead-lettered.
        prefetch_count: unacked messages in flight on this consumer, which is also how
            many handlers of this queue run at once (acks come after the work).
        deadline_s: longest run of one handler, in seconds (None: no deadline); past it
            the handler is cancelled and the message retried (:class:`HandlerDeadlineError`).
        on_dead_letter: awaited before a message goes to ``<queue>.dead``.
        db_connections: connections of a :class:`shared.db.Pool` this queue's handlers
            hold at once (:func:`shared.db.connection_share`); None: no share of its own.
    """

    def __init__(
        self,
        broker: Broker,
        spec: QueueSpec,
        handler: Handler,
        *,
        max_attempts: int,
        prefetch_count: int = 32,
        deadline_s: float | None = None,
        on_dead_letter: DeadLetterHook | None = None,
        db_connections: int | None = None,
    ) -> None:
        self.broker = broker
        self.spec = spec
        self.queue_name = broker.topology.queue(spec)
        self.handler = handler
        self.max_attempts = max_attempts
        self.prefetch_count = prefetch_count
        self.deadline_s = deadline_s
        self.on_dead_letter = on_dead_letter
        self._db_share = asyncio.Semaphore(db_connections) if db_connections else None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._tracebacks = TracebackBudget()
        # The current channel's acks, and which batcher each message in flight has.
        self._acks: AckBatcher | None = None
        self._acks_of: dict[int, AckBatcher] = {}

    @property
    def consuming(self) -> bool:
        """True while subscribed on an open channel (False once its connection is gone)."""
        return self._tag is not None and self._channel is not None and not self._channel.is_closed

    def closed(self) -> Awaitable[Literal[True]]:
        """Done when this consumer's channel closes (its connection lost, or RabbitMQ
        closed the channel); :meth:`start` subscribes again."""
        if self._channel is None:
            raise RuntimeError("consumer not started")
        return self._channel.closed()

    async def start(self) -> None:
        """Open a channel with the prefetch and start consuming (again, after the
        broker reconnected: on the new connection; messages left unacked on the old
        one were requeued by RabbitMQ and come again, to idempotent handlers)."""
        old, self._channel, self._tag = self._channel, None, None
        if old is not None and not old.is_closed:
            with contextlib.suppress(Exception):
                await old.close()
        channel = await self.broker.channel(self.prefetch_count)
        try:
            self._queue = await channel.get_queue(self.queue_name, ensure=True)
            self._tag = await self._queue.consume(self._on_message)
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        self._channel = channel

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop taking messages, let in-flight handlers finish within ``grace_s``."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace_s)
        if self._acks is not None:
            await self._acks.drain()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        acks = self._register(message)
        try:
            with connection_share(self._db_share):
                await self._handle(message)
        except CHANNEL_GONE as exc:
            # The ack (or nack) could not reach RabbitMQ: the connection went. The
            # message was not acked, so RabbitMQ delivers it again (on any node).
            log.info("handler.ack_lost", queue=self.queue_name, error=f"{type(exc).__name__}")
        finally:
            if acks is not None and message.delivery_tag is not None:
                self._acks_of.pop(id(message), None)
                acks.finished(message.delivery_tag, message.processed)
            if task is not None:
                self._in_flight.discard(task)

    def _register(self, message: AbstractIncomingMessage) -> AckBatcher | None:
        """Hand ``message``'s delivery tag to its channel's :class:`AckBatcher`."""
        if message.delivery_tag is None:
            return None
        try:
            channel = message.channel
        except aio_pika.exceptions.ChannelInvalidStateError:
            return None  # closed already: its acks could not be sent anyway
        if self._acks is None or self._acks.channel is not channel:
            self._acks = AckBatcher(channel, self.queue_name)
        self._acks.delivered(message.delivery_tag)
        self._acks_of[id(message)] = self._acks
        return self._acks

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        """Ack ``message`` (its work is durable): in a shared frame where it can be."""
        acks = self._acks_of.get(id(message))
        if acks is None or message.delivery_tag is None:
            await message.ack()
        else:
            acks.ack(message.delivery_tag)

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
            await self._call(event, delivery)
        except PermanentError as exc:
            log.error("handler.failed_permanently", error=str(exc), attempt=delivery.attempt)
            await self._dead_letter(message, event, delivery, str(exc))
        except ValidationError as exc:
            error = f"invalid: {describe_validation_error(exc)}"
            log.error("handler.failed_permanently", error=error, attempt=delivery.attempt)
            await self._dead_letter(message, event, delivery, error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transient, or a bug: both are retried, boundedly
            await self._retry(message, event, delivery, exc)
        else:
            MESSAGES_HANDLED.labels(self.queue_name, "ok").inc()
            await self._ack(message)
            log.debug("handler.succeeded")
        finally:
            HANDLER_SECONDS.labels(self.queue_name).observe(time.perf_counter() - started)

    async def _call(self, event: CloudEvent, delivery: Delivery) -> None:
        """The handler, under the deadline."""
        if self.deadline_s is None:
            await self.handler(event, delivery)
            return
        scope = asyncio.timeout(self.deadline_s)
        try:
            async with scope:
                await self.handler(event, delivery)
        except TimeoutError:
            if scope.expired():
                raise HandlerDeadlineError(
                    f"handler ran past its {self.deadline_s:g} s deadline"
                ) from None
            raise

    async def _retry(
        self,
        message: AbstractIncomingMessage,
        event: CloudEvent,
        delivery: Delivery,
        exc: Exception,
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if delivery.is_last_attempt:
            log.error(
                "handler.failed",
                error=error,
                attempt=delivery.attempt,
                final=True,
                exc_info=self._tracebacks.due(exc),
            )
            await self._dead_letter(message, event, delivery, error)
            return
        retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
        delay = delivery.next_retry_delay_s(retry_after)
        expected = isinstance(exc, EXPECTED_ERRORS)
        log.warning(
            "handler.retrying",
            error=error,
            attempt=delivery.attempt,
            delay_s=delay,
            exc_info=None if expected else self._tracebacks.due(exc),
        )
        await self._publish_retry(message, event, delay, delivery.attempt + 1, error)

    async def _publish_retry(
        self,
        message: AbstractIncomingMessage,
        event: CloudEvent,
        delay_s: float,
        attempt: int,
        error: str | None = None,
    ) -> None:
        try:
            await self.broker.publish_retry(
                delay_s,
                self.queue_name,
                event,
                attempt=attempt,
                first_error=_first_error(message) or error,
            )
        except BrokerUnavailableError:
            await self._requeue(message)
            return
        MESSAGES_HANDLED.labels(self.queue_name, "retried").inc()
        await self._ack(message)

    async def _dead_letter(
        self, message: AbstractIncomingMessage, event: CloudEvent, delivery: Delivery, error: str
    ) -> None:
        if self.on_dead_letter is not None:
            try:
                await self.on_dead_letter(event, delivery, error)
            except Exception as exc:
                # Its bookkeeping did not land (the database is down?): keep the message
                # and come back later at the same attempt, rather than lose the record.
                delay = max(delivery.retry_delays_s, default=0.0)
                log.warning(
                    "handler.dead_letter_hook_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    attempt=delivery.attempt,
                    delay_s=delay,
                )
                if delay > 0:
                    await self._publish_retry(message, event, delay, delivery.attempt)
                else:
                    await self._requeue(message)
                return
        try:
            await self.broker.publish_dead(
                self.queue_name,
                event,
                attempt=delivery.attempt,
                error=error,
                first_error=_first_error(message),
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


def _first_error(message: AbstractIncomingMessage) -> str | None:
    """The first attempt's error a retried message carries (``x-crmsync-first-error``)."""
    value = (message.headers or {}).get(FIRST_ERROR_HEADER)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if value else None
