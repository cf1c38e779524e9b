"""Dead letters: list, show, replay and purge ``<queue>.dead`` over AMQP alone.

No management plugin needed: counts come from passive declares, messages are read
with ``basic.get`` and given back with ``basic.nack(requeue=True)`` in their order
(RabbitMQ 4.3+ does not count a nack against a quorum queue's delivery limit, a
reject it does: https://www.rabbitmq.com/docs/4.3/nack; crmsync's ``.dead`` queues
have no ``x-delivery-limit`` of their own).

A replay republishes each selected message to its work queue (the default exchange,
routing key = the work queue's name, mandatory) with ``x-crmsync-attempt`` reset to 1
and the dead-letter headers removed, **waits for the publisher confirm, then acks
the dead copy**. A crash between the two leaves the dead copy in place (the channel
closes, RabbitMQ requeues it) and the work queue has the replayed one: at worst the
event is replayed twice, which the idempotent handlers absorb. Nothing is lost.

Every function takes an open connection (``Broker.connection`` in a service, or
:func:`aio_pika.connect_robust`) and keyword arguments:

- ``topology``: :class:`shared.topology.Topology` (its namespace prefixes every name);
- ``specs``: the work queues to look at (default :data:`ALL_SPECS`: the syncer's
  queues of :mod:`shared.queues` and every job's queue);
- ``queue``: a dead queue named **without** the namespace, ``"syncer.orders.dead"``;
  its work queue's name (``"syncer.orders"``) is accepted too.

Errors: :class:`UnknownDeadQueueError` for a name that is not one of ``specs``
(or does not exist in RabbitMQ); AMQP errors from aio-pika pass through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from shared import queues as queue_specs
from shared.jobs import JOB_QUEUES
from shared.ops.dead_letter_messages import (
    REASON_SCAN_LIMIT,
    DeadLetter,
    describe,
    message_key,
    reason_class,
    replay_message,
)
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)

# Longest wait, in seconds, for given-back messages to be ready in their queue again.
GIVE_BACK_WAIT_S = 5.0

__all__ = [
    "ALL_SPECS",
    "DeadLetter",
    "DeadQueueSummary",
    "ReplayResult",
    "UnknownDeadQueueError",
    "describe",
    "list_dead_letters",
    "message_key",
    "purge_dead_letters",
    "reason_class",
    "replay_dead_letters",
    "replay_message",
    "show_dead_letters",
]

# Every crmsync work queue: the syncer's and the jobs'.
ALL_SPECS: tuple[QueueSpec, ...] = (*queue_specs.ALL, *JOB_QUEUES.values())


class UnknownDeadQueueError(LookupError):
    """The queue named is not a crmsync dead queue (or RabbitMQ has no such queue)."""


@dataclass(frozen=True)
class DeadQueueSummary:
    """One ``.dead`` queue.

    Attributes:
        queue: the dead queue, without namespace (``syncer.orders.dead``).
        work_queue: where a replay sends its messages (``syncer.orders``).
        count: messages in it (ready; exact, from a passive declare).
        oldest_age_s: seconds since the oldest message was dead-lettered (None if empty).
        reasons: reason → messages, over the first :data:`REASON_SCAN_LIMIT`.
    """

    queue: str
    work_queue: str
    count: int
    oldest_age_s: float | None
    reasons: dict[str, int]


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: ids sent back to the work queue (or that would be, in a
    dry run) and ids asked for that were not found in the dead queue."""

    replayed: list[str]
    skipped: list[str]
    dry_run: bool


def _names(topology: Topology, specs: Iterable[QueueSpec], queue: str) -> tuple[str, str]:
    """(dead queue, work queue) full names for ``queue`` (without namespace)."""
    base = queue.removesuffix(".dead")
    known = {s.name for s in specs}
    if base not in known:
        raise UnknownDeadQueueError(f"no dead queue {queue!r}; known: {sorted(known)}")
    return topology.dead_queue(base), topology.queue(base)


async def _open(
    connection: AbstractConnection, dead: str, *, confirms: bool = False
) -> tuple[AbstractChannel, AbstractQueue]:
    channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
    try:
        queue = await channel.declare_queue(dead, passive=True)
    except aio_pika.exceptions.ChannelClosed as exc:
        raise UnknownDeadQueueError(f"RabbitMQ has no queue {dead!r}") from exc
    return channel, queue


async def _read(queue: AbstractQueue, limit: int) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` messages, unacked (give them back with :func:`_give_back`)."""
    messages: list[AbstractIncomingMessage] = []
    while len(messages) < limit:
        message = await _get(queue, expected=len(messages) < _count(queue))
        if message is None:
            break
        messages.append(message)
    return messages


async def _get(queue: AbstractQueue, *, expected: bool) -> AbstractIncomingMessage | None:
    """The next message, unacked; when the queue's count at open says there should be
    one (``expected``), an empty answer is asked again for a while: a message an
    earlier call gave back may still be on its way back to the queue."""
    deadline = asyncio.get_running_loop().time() + GIVE_BACK_WAIT_S
    while True:
        message = await queue.get(no_ack=False, fail=False)
        if message is not None or not expected:
            return message
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.02)


def _count(queue: AbstractQueue) -> int:
    """Ready messages when the queue was opened (its passive declare)."""
    return queue.declaration_result.message_count or 0


async def _give_back(
    channel: AbstractChannel,
    queue: AbstractQueue,
    messages: Sequence[AbstractIncomingMessage],
    *,
    taken: int,
) -> None:
    """Requeue ``messages`` in order (nack, not reject, which counts as a failed
    delivery), ``taken`` having been read (the others acked), then wait until the queue
    holds again at least what it held when opened, less the acked, and at least the
    given-back plus those never read.

    A nack has no reply, and a quorum queue requeues through its log: without the
    wait, a purge or replay run right after a ``show`` could find the queue empty.
    """
    for message in messages:
        await message.nack(requeue=True)
    if not messages:
        return
    # The count at open may miss messages still being requeued by an earlier call.
    at_open = queue.declaration_result.message_count or 0
    ready = max(at_open - (taken - len(messages)), len(messages) + max(0, at_open - taken))
    deadline = asyncio.get_running_loop().time() + GIVE_BACK_WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        again = await channel.declare_queue(queue.name, passive=True)
        if (again.declaration_result.message_count or 0) >= ready:
            return
        await asyncio.sleep(0.02)


async def list_dead_letters(
    connection: AbstractConnection,
    *,
    topology: Topology,
    specs: Iterable[QueueSpec] = ALL_SPECS,
    queue: str | None = None,
) -> list[DeadQueueSummary]:
    """Every dead queue of ``specs`` (or just ``queue``), by name.

    Queues RabbitMQ does not have (never declared) are left out of the full listing.

    Raises:
        UnknownDeadQueueError: ``queue`` is not one of ``specs`` or does not exist.
    """
    specs = tuple(specs)
    wanted = [queue] if queue is not None else sorted(s.name for s in specs)
    summaries = []
    now = datetime.now(UTC)
    for name in wanted:
        dead, _ = _names(topology, specs, name)
        try:
            channel, amqp_queue = await _open(connection, dead)
        except UnknownDeadQueueError:
            if queue is not None:
                raise
            continue
        try:
            count = amqp_queue.declaration_result.message_count or 0
            messages = await _read(amqp_queue, min(count, REASON_SCAN_LIMIT)) if count else []
            reasons: dict[str, int] = {}
            oldest: datetime | None = None
            for message in messages:
                letter = describe(message)
                key = reason_class(letter.reason)
                reasons[key] = reasons.get(key, 0) + 1
                if letter.time is not None and (oldest is None or letter.time < oldest):
                    oldest = letter.time
            await _give_back(channel, amqp_queue, messages, taken=len(messages))
        finally:
            await channel.close()
        base = name.removesuffix(".dead")
        summaries.append(
            DeadQueueSummary(
                queue=f"{base}.dead",
                work_queue=base,
                count=count,
                oldest_age_s=(now - oldest).total_seconds() if oldest is not None else None,
                reasons=reasons,
            )
        )
    return summaries


async def show_dead_letters(
    connection: AbstractConnection,
    *,
    topology: Topology,
    specs: Iterable[QueueSpec] = ALL_SPECS,
    queue: str,
    limit: int = 20,
) -> list[DeadLetter]:
    """The first ``limit`` messages of ``queue``, oldest first; they stay where they are.

    Raises:
        UnknownDeadQueueError: ``queue`` is not one of ``specs`` or does not exist.
    """
    dead, _ = _names(topology, specs, queue)
    channel, amqp_queue = await _open(connection, dead)
    try:
        messages = await _read(amqp_queue, limit)
        letters = [describe(m) for m in messages]
        await _give_back(channel, amqp_queue, messages, taken=len(messages))
    finally:
        await channel.close()
    return letters


async def replay_dead_letters(
    connection: AbstractConnection,
    *,
    topology: Topology,
    specs: Iterable[QueueSpec] = ALL_SPECS,
    queue: str,
    ids: Sequence[str] | None = None,
    all: bool = False,
    dry_run: bool = False,
) -> ReplayResult:
    """Send the selected messages of ``queue`` back to its work queue.

    Each one is published (persistent, mandatory) and confirmed before its dead copy
    is acked; the others are given back in their order. Only the messages in the
    queue when the call starts are looked at.

    Args:
        ids: message ids (:attr:`DeadLetter.message_id`) to replay.
        all: replay every message (``ids`` ignored).
        dry_run: publish and ack nothing; ``replayed`` says what would go.

    Returns:
        :class:`ReplayResult`; ``skipped`` = ``ids`` not found.

    Raises:
        ValueError: neither ``ids`` nor ``all``.
        UnknownDeadQueueError: ``queue`` is not one of ``specs`` or does not exist.
        aio_pika.exceptions.DeliveryError: RabbitMQ refused a publish (that message
            and the rest stay dead).
    """
    if not all and not ids:
        raise ValueError("give message ids, or all=True")
    dead, work = _names(topology, specs, queue)
    wanted = set(ids or ())
    channel, amqp_queue = await _open(connection, dead, confirms=not dry_run)
    replayed: list[str] = []
    kept: list[AbstractIncomingMessage] = []
    try:
        count = amqp_queue.declaration_result.message_count or 0
        taken = 0
        for _ in range(count):
            message = await _get(amqp_queue, expected=True)
            if message is None:
                break
            taken += 1
            key = message_key(message)
            if not (all or key in wanted):
                kept.append(message)
                continue
            replayed.append(key)
            if dry_run:
                kept.append(message)
                continue
            await channel.default_exchange.publish(
                replay_message(message), routing_key=work, mandatory=True
            )
            await message.ack()
            log.info("dead_letter.replayed", queue=dead, work_queue=work, message_id=key)
        await _give_back(channel, amqp_queue, kept, taken=taken)
    finally:
        await channel.close()
    return ReplayResult(
        replayed=replayed,
        skipped=sorted(wanted - set(replayed)) if not all else [],
        dry_run=dry_run,
    )


async def purge_dead_letters(
    connection: AbstractConnection,
    *,
    topology: Topology,
    specs: Iterable[QueueSpec] = ALL_SPECS,
    queue: str,
    ids: Sequence[str],
) -> int:
    """Drop the messages ``ids`` from ``queue`` for good; the others stay in order.

    Returns:
        how many were dropped.

    Raises:
        ValueError: no ids.
        UnknownDeadQueueError: ``queue`` is not one of ``specs`` or does not exist.
    """
    if not ids:
        raise ValueError("give the message ids to purge")
    dead, _ = _names(topology, specs, queue)
    wanted = set(ids)
    channel, amqp_queue = await _open(connection, dead)
    dropped = 0
    kept: list[AbstractIncomingMessage] = []
    try:
        count = amqp_queue.declaration_result.message_count or 0
        taken = 0
        for _ in range(count):
            message = await _get(amqp_queue, expected=True)
            if message is None:
                break
            taken += 1
            key = message_key(message)
            if key in wanted:
                await message.ack()
                dropped += 1
                log.info("dead_letter.purged", queue=dead, message_id=key)
            else:
                kept.append(message)
        await _give_back(channel, amqp_queue, kept, taken=taken)
    finally:
        await channel.close()
    return dropped
