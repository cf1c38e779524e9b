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

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared import queues as queue_specs
from shared.events import ATTEMPT_HEADER, HEADER_PREFIX, attempt_of
from shared.jobs import JOB_QUEUES
from shared.topology import QueueSpec, Topology

log = structlog.get_logger(__name__)

# Every crmsync work queue: the syncer's and the jobs'.
ALL_SPECS: tuple[QueueSpec, ...] = (*queue_specs.ALL, *JOB_QUEUES.values())

# Characters of a body shown by show_dead_letters.
BODY_PREVIEW_CHARS = 200
# Messages read per dead queue to count reasons in list_dead_letters (the count
# itself is exact; reasons cover the first this many).
REASON_SCAN_LIMIT = 1000
# Headers that describe a dead-lettering; a replay removes them.
ERROR_HEADER = "x-crmsync-error"
FIRST_ERROR_HEADER = "x-crmsync-first-error"
DEAD_AT_HEADER = "x-crmsync-dead-at"
QUEUE_HEADER = "x-crmsync-queue"
REPLAYS_HEADER = "x-crmsync-replays"
_DEATH_HEADERS = (
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    "x-delivery-count",
    ERROR_HEADER,
    FIRST_ERROR_HEADER,
    DEAD_AT_HEADER,
    QUEUE_HEADER,
)


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
class DeadLetter:
    """One dead-lettered message.

    Attributes:
        message_id: AMQP ``message_id`` (= the event id), or ``sha256:<16 hex>`` of
            the body when it has none; what replay / purge ``ids`` take.
        event_id: the CloudEvents ``id`` header (None: not a valid envelope).
        type: the CloudEvents ``type``.
        reason: why it is here: the ``x-crmsync-error`` header, or RabbitMQ's own
            reason (``rabbitmq: rejected`` / ``delivery_limit``).
        attempts: handler attempts it had (``x-crmsync-attempt``).
        first_error: the error of its first failed attempt (``x-crmsync-first-error``;
            the reason when it failed on its first attempt).
        time: when it was dead-lettered (else the event's time; None if neither).
        body_preview: the first :data:`BODY_PREVIEW_CHARS` characters of the body.
    """

    message_id: str
    event_id: str | None
    type: str | None
    reason: str | None
    attempts: int
    first_error: str | None
    time: datetime | None
    body_preview: str


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


def message_key(message: AbstractIncomingMessage) -> str:
    """The id an operator selects ``message`` by (see :class:`DeadLetter`)."""
    if message.message_id:
        return str(message.message_id)
    return "sha256:" + hashlib.sha256(message.body).hexdigest()[:16]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reason(headers: dict[str, Any]) -> str | None:
    error = _text(headers.get(ERROR_HEADER))
    if error:
        return error
    native = _text(headers.get("x-first-death-reason"))
    return f"rabbitmq: {native}" if native else None


def reason_class(reason: str | None) -> str:
    """A reason's kind for counting: the text before the first ``:`` (80 chars max)."""
    if not reason:
        return "unknown"
    head = reason.split(":", 1)[0] if not reason.startswith("rabbitmq:") else reason
    return head.strip()[:80] or "unknown"


def _dead_at(headers: dict[str, Any], message: AbstractIncomingMessage) -> datetime | None:
    raw = _text(headers.get(DEAD_AT_HEADER))
    if raw:
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        when = deaths[0].get("time")
        if isinstance(when, datetime):
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    event_time = _text(headers.get(f"{HEADER_PREFIX}time"))
    if event_time:
        try:
            return datetime.fromisoformat(event_time)
        except ValueError:
            pass
    ts = message.timestamp
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    """A :class:`DeadLetter` of one message read from a dead queue."""
    headers = dict(message.headers or {})
    reason = _reason(headers)
    return DeadLetter(
        message_id=message_key(message),
        event_id=_text(headers.get(f"{HEADER_PREFIX}id")),
        type=_text(headers.get(f"{HEADER_PREFIX}type")) or message.type,
        reason=reason,
        attempts=attempt_of(headers),
        first_error=_text(headers.get(FIRST_ERROR_HEADER)) or reason,
        time=_dead_at(headers, message),
        body_preview=message.body[: BODY_PREVIEW_CHARS * 4].decode(errors="replace")[
            :BODY_PREVIEW_CHARS
        ],
    )


async def _open(
    connection: AbstractRobustConnection, dead: str, *, confirms: bool = False
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
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        messages.append(message)
    return messages


async def _give_back(messages: Sequence[AbstractIncomingMessage]) -> None:
    """Requeue in order: nack (not reject, which counts as a failed delivery)."""
    for message in messages:
        await message.nack(requeue=True)


async def list_dead_letters(
    connection: AbstractRobustConnection,
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
            await _give_back(messages)
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
    connection: AbstractRobustConnection,
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
        await _give_back(messages)
    finally:
        await channel.close()
    return letters


def replay_message(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The copy a replay publishes: same body and properties, attempt 1, no
    dead-letter headers, ``x-crmsync-replays`` + 1."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEATH_HEADERS}
    headers[ATTEMPT_HEADER] = 1
    replays = headers.get(REPLAYS_HEADER, 0)
    headers[REPLAYS_HEADER] = (replays if isinstance(replays, int) else 0) + 1
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        timestamp=message.timestamp,
        reply_to=message.reply_to,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def replay_dead_letters(
    connection: AbstractRobustConnection,
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
        for _ in range(count):
            message = await amqp_queue.get(no_ack=False, fail=False)
            if message is None:
                break
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
        await _give_back(kept)
    finally:
        await channel.close()
    return ReplayResult(
        replayed=replayed,
        skipped=sorted(wanted - set(replayed)) if not all else [],
        dry_run=dry_run,
    )


async def purge_dead_letters(
    connection: AbstractRobustConnection,
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
        for _ in range(count):
            message = await amqp_queue.get(no_ack=False, fail=False)
            if message is None:
                break
            key = message_key(message)
            if key in wanted:
                await message.ack()
                dropped += 1
                log.info("dead_letter.purged", queue=dead, message_id=key)
            else:
                kept.append(message)
        await _give_back(kept)
    finally:
        await channel.close()
    return dropped
