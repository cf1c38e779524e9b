"""RabbitMQ topology: names and declarations, idempotent, run by every service on start.

::

    crmsync.events (topic) ──routing key = event type──▶ syncer.orders (quorum)
                                                         │ reject / too many deliveries
    crmsync.dead (direct) ◀──────────────────────────────┘
         └──routing key = queue──▶ syncer.orders.dead (quorum)

    crmsync.retry.30s (fanout) ──▶ crmsync.retry.30s (quorum, x-message-ttl)
        ──expires──▶ "" (default exchange, the message's own routing key) ──▶ syncer.orders

Every work queue is a quorum queue with its own ``x-delivery-limit`` (RabbitMQ 4.x
defaults it to 20 and drops past it without a dead-letter exchange; 3.10 has no
default) and at-least-once dead-lettering (needs ``x-overflow: reject-publish``), so
nothing is dropped on the way to ``<queue>.dead``. Delayed retries are per-delay
queues shared by every handler: a retry is published to ``crmsync.retry.<delay>``
with the routing key = its work queue's name, waits out the queue's TTL, and is
dead-lettered through the default exchange (no ``x-dead-letter-routing-key``, so
its own routing key is kept) straight back to its work queue. One queue per delay,
not one per handler and delay, keeps a single node's quorum queue count low. All of
it shows in the management console under names that say what they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from shared.errors import TopologyMismatchError

# Redeliveries (consumer crashes, nacks) before RabbitMQ dead-letters a message on
# its own; our handler attempts are counted separately in x-crmsync-attempt.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class QueueSpec:
    """One handler's queue.

    Attributes:
        name: without namespace, e.g. ``"syncer.orders"``.
        routing_keys: topic patterns bound on the events exchange.
        retry_delays_s: the delays, in seconds, a retry may wait; one retry queue each.
    """

    name: str
    routing_keys: tuple[str, ...]
    retry_delays_s: tuple[float, ...] = field(default=())


def delay_label(delay_s: float) -> str:
    """``120`` → ``"120s"``, ``0.5`` → ``"500ms"``: readable retry-queue suffixes."""
    ms = round(delay_s * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class Topology:
    """Names and declarations, all under one optional namespace prefix.

    Args:
        namespace: prefixed to every exchange and queue name (``""`` in production;
            tests use a unique one each so they never see each other's messages).
        delivery_limit: quorum queue ``x-delivery-limit``.
    """

    def __init__(self, namespace: str = "", delivery_limit: int = DELIVERY_LIMIT) -> None:
        self.namespace = namespace
        self.delivery_limit = delivery_limit

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}crmsync.events"

    @property
    def dead_exchange(self) -> str:
        return f"{self.namespace}crmsync.dead"

    def queue(self, spec: QueueSpec | str) -> str:
        name = spec.name if isinstance(spec, QueueSpec) else spec
        return f"{self.namespace}{name}"

    def dead_queue(self, spec: QueueSpec | str) -> str:
        return f"{self.queue(spec)}.dead"

    def retry_queue(self, delay_s: float) -> str:
        """The delay queue, and its fanout exchange of the same name."""
        return f"{self.namespace}crmsync.retry.{delay_label(delay_s)}"

    def work_queue_arguments(self, spec: QueueSpec | str) -> dict[str, Any]:
        """The arguments a work queue is declared with (a queue that exists with
        other ones is a :class:`TopologyMismatchError`)."""
        name = self.queue(spec)
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    async def declare_exchanges(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare the events and dead-letter exchanges; returns the events exchange.

        Raises:
            TopologyMismatchError: one exists with another type or durability.
        """
        try:
            return await self._declare_exchanges(channel)
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            raise _mismatch(exc) from exc

    async def _declare_exchanges(self, channel: AbstractChannel) -> AbstractExchange:
        events = await channel.declare_exchange(
            self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(
            self.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        return events

    async def declare(
        self, channel: AbstractChannel, specs: Iterable[QueueSpec]
    ) -> dict[str, AbstractQueue]:
        """Declare exchanges, then each spec's work, dead and retry queues.

        Returns:
            work queues by their full name.

        Raises:
            TopologyMismatchError: a queue or exchange exists with other arguments
                (e.g. ``x-delivery-limit``); RabbitMQ has closed ``channel``.
        """
        try:
            return await self._declare(channel, specs)
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            raise _mismatch(exc) from exc

    async def _declare(
        self, channel: AbstractChannel, specs: Iterable[QueueSpec]
    ) -> dict[str, AbstractQueue]:
        events = await self._declare_exchanges(channel)
        queues: dict[str, AbstractQueue] = {}
        declared_delays: set[float] = set()
        for spec in specs:
            name = self.queue(spec)
            dead = await channel.declare_queue(
                self.dead_queue(spec), durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(self.dead_exchange, routing_key=name)
            work = await channel.declare_queue(
                name, durable=True, arguments=self.work_queue_arguments(spec)
            )
            for key in spec.routing_keys:
                await work.bind(events, routing_key=key)
            for delay in spec.retry_delays_s:
                if delay not in declared_delays:
                    await self._declare_retry(channel, delay)
                    declared_delays.add(delay)
            queues[name] = work
        return queues

    async def _declare_retry(self, channel: AbstractChannel, delay: float) -> None:
        name = self.retry_queue(delay)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await queue.bind(exchange)


def pick_delay(delays_s: Sequence[float], attempt: int, at_least_s: float | None = None) -> float:
    """The retry delay after failed ``attempt`` (1-based), from the declared delays.

    Uses ``delays_s[attempt - 1]`` (the last one once past the end), raised to the
    smallest declared delay that is at least ``at_least_s`` (a provider's
    ``Retry-After``), or the longest declared delay if none is long enough.
    """
    if not delays_s:
        raise ValueError("no retry delays declared")
    ordered = sorted(delays_s)
    chosen = delays_s[min(attempt, len(delays_s)) - 1]
    if at_least_s is not None and chosen < at_least_s:
        longer = [d for d in ordered if d >= at_least_s]
        chosen = longer[0] if longer else ordered[-1]
    return chosen


# RabbitMQ's text for PRECONDITION_FAILED on a declare (rabbit_misc equivalence checks):
# "inequivalent arg 'x-delivery-limit' for queue 'syncer.orders' in vhost '/': received
# '20' but current is '10'", or "... received none but current is the value '10' of type
# 'byte'".
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<argument>[^']*)' for (?P<kind>queue|exchange) '(?P<name>[^']*)'"
    r" in vhost '[^']*': received (?:the value )?(?P<declared>'[^']*'|none)"
    r"(?: of type '[^']*')? but current is (?:the value )?(?P<existing>'[^']*'|none)"
)


def mismatch_from(exc: BaseException) -> TopologyMismatchError | None:
    """The :class:`TopologyMismatchError` ``exc`` is or stands for, else None."""
    if isinstance(exc, TopologyMismatchError):
        return exc
    if isinstance(exc, aio_pika.exceptions.ChannelPreconditionFailed):
        return _mismatch(exc)
    return None


def _mismatch(exc: BaseException) -> TopologyMismatchError:
    text = " ".join(str(a) for a in exc.args) or str(exc)
    match = _INEQUIVALENT.search(text)
    if match is None:
        return TopologyMismatchError(
            f"RabbitMQ refused a declaration: {text}",
            kind="",
            name="",
            argument="",
            existing="",
            declared="",
        )
    kind, name, argument = match["kind"], match["name"], match["argument"]
    existing, declared = match["existing"].strip("'"), match["declared"].strip("'")
    if existing == "none":
        how = f"without {argument}, crmsync declares {argument}={declared}"
    elif declared == "none":
        how = f"with {argument}={existing}, crmsync declares none"
    else:
        how = f"with {argument}={existing}, crmsync declares {declared}"
    return TopologyMismatchError(
        f"{kind} {name} exists {how}; delete it (or migrate it) so crmsync can declare it",
        kind=kind,
        name=name,
        argument=argument,
        existing=existing,
        declared=declared,
    )
