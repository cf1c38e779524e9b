"""Request/reply over RabbitMQ: publish a request, wait a few seconds for its answer.

Each intake process consumes its own exclusive, auto-deleted reply queue
(``intake.replies.<uuid>``; RabbitMQ removes it when the process goes). A request
carries ``reply_to`` = that queue; the syncer answers with ``correlation_id`` = the
request's event id. An answer that comes after the caller stopped waiting is dropped:
the work it reports is done and stored anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.broker import Broker
from shared.errors import BrokerUnavailableError
from shared.events import CloudEvent

log = structlog.get_logger(__name__)


class Replies:
    """The reply queue of one intake process and the requests waiting on it."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.queue_name = f"{broker.topology.namespace}intake.replies.{uuid.uuid4().hex[:12]}"
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None

    async def _ensure(self) -> None:
        if self._queue is not None and self._channel is not None and not self._channel.is_closed:
            return
        # First use, or the broker reconnected (another node): a new reply queue there.
        self._queue = None
        await self.broker.wait_ready(timeout_s=1)
        assert self.broker.connection is not None
        self._channel = await self.broker.connection.channel()
        self._queue = await self._channel.declare_queue(
            self.queue_name, exclusive=True, auto_delete=True
        )
        await self._queue.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def request(self, event: CloudEvent, timeout_s: float) -> bytes | None:
        """Publish ``event`` (confirmed) and wait up to ``timeout_s`` for its answer.

        Returns:
            the answer's body, or None when none came in time.

        Raises:
            BrokerUnavailableError: the request could not be published.
        """
        try:
            await self._ensure()
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailableError(f"reply queue: {exc}") from exc
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[event.id] = future
        try:
            await self.broker.publish(event, reply_to=self.queue_name)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(event.id, None)

    async def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
