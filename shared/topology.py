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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from shared.topology_mismatch import INEQUIVALENT, mismatch, mismatch_from

__all__ = ["GROUP_SIZE_ARGUMENT", "QueueSpec", "Topology", "declare_quorum_queue", "mismatch_from"]

# Replicas of a quorum queue when it is created; RabbitMQ caps it at the cluster size
# (https://www.rabbitmq.com/docs/quorum-queues#replication-factor).
GROUP_SIZE_ARGUMENT = "x-quorum-initial-group-size"

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
        group_size: ``x-quorum-initial-group-size`` of the quorum queues this topology
            *creates* (``CommonSettings.quorum_group_size()``); None: RabbitMQ's
            default. Never part of a comparison: see :func:`declare_quorum_queue`.
    """

    def __init__(
        self,
        namespace: str = "",
        delivery_limit: int = DELIVERY_LIMIT,
        *,
        group_size: int | None = None,
    ) -> None:
        self.namespace = namespace
        self.delivery_limit = delivery_limit
        self.group_size = group_size

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
        other ones is a :class:`TopologyMismatchError`; ``crmsync doctor`` compares)."""
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
            raise mismatch(exc) from exc

    async def _declare_exchanges(self, channel: AbstractChannel) -> AbstractExchange:
        events = await channel.declare_exchange(
            self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(
            self.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        return events

    def dead_queue_arguments(self) -> dict[str, Any]:
        """The arguments of a ``<queue>.dead`` queue."""
        return {"x-queue-type": "quorum"}

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
            raise mismatch(exc) from exc

    async def _declare(
        self, channel: AbstractChannel, specs: Iterable[QueueSpec]
    ) -> dict[str, AbstractQueue]:
        events = await self._declare_exchanges(channel)
        queues: dict[str, AbstractQueue] = {}
        declared_delays: set[float] = set()
        for spec in specs:
            name = self.queue(spec)
            dead = await declare_quorum_queue(
                channel, self.dead_queue(spec), self.dead_queue_arguments(), self.group_size
            )
            await dead.bind(self.dead_exchange, routing_key=name)
            work = await declare_quorum_queue(
                channel, name, self.work_queue_arguments(spec), self.group_size
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
        arguments = {
            "x-queue-type": "quorum",
            "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        queue = await declare_quorum_queue(channel, name, arguments, self.group_size)
        await queue.bind(exchange)


async def declare_quorum_queue(
    channel: AbstractChannel,
    name: str,
    arguments: dict[str, Any],
    group_size: int | None = None,
) -> AbstractQueue:
    """Declare durable queue ``name`` with ``arguments``; create it with
    ``x-quorum-initial-group-size`` = ``group_size`` only when it does not exist yet.

    RabbitMQ (3.10 and 4.x) compares ``x-quorum-initial-group-size`` like any other
    argument: redeclaring a queue with a value, or none, other than the one it was
    created with is ``PRECONDITION_FAILED``. So, with ``group_size``, the queue is first
    declared passively (does it exist?), and created with the argument only if it does
    not; an existing queue is declared with ``arguments`` and, when RabbitMQ names
    ``x-quorum-initial-group-size`` as the difference, again with the value it has, so
    every *other* argument is still compared. A 404 or 406 closes ``channel``; it is
    reopened (a plain aio-pika channel: :meth:`Channel.reopen`).

    Raises:
        aio_pika.exceptions.ChannelPreconditionFailed: another argument differs.
    """
    if group_size is not None:
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            await channel.reopen()
            try:
                return await channel.declare_queue(
                    name, durable=True, arguments={**arguments, GROUP_SIZE_ARGUMENT: group_size}
                )
            except aio_pika.exceptions.ChannelPreconditionFailed:
                await channel.reopen()  # created meanwhile by another replica: compare
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        existing = _existing_group_size(exc)
        if existing is None:
            raise
        await channel.reopen()
        return await channel.declare_queue(
            name, durable=True, arguments={**arguments, GROUP_SIZE_ARGUMENT: existing}
        )


def _existing_group_size(exc: BaseException) -> int | None:
    """The queue's own group size when ``exc`` says only that differs, else None."""
    match = INEQUIVALENT.search(" ".join(str(a) for a in exc.args) or str(exc))
    if match is None or match["argument"] != GROUP_SIZE_ARGUMENT:
        return None
    existing = match["existing"].strip("'")
    return int(existing) if existing.isdigit() else None


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
