"""One dead-lettered message: its headers read for people, and the copy a replay sends.

Headers crmsync writes when it dead-letters (``Broker.publish_dead``):
``x-crmsync-error`` (the reason), ``x-crmsync-first-error`` (the first attempt's
error), ``x-crmsync-dead-at`` (ISO time), ``x-crmsync-queue``; RabbitMQ's own
dead-lettering (a reject, the delivery limit) writes ``x-death`` and
``x-first-death-reason`` instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.broker import FIRST_ERROR_HEADER
from shared.events import ATTEMPT_HEADER, HEADER_PREFIX, attempt_of

# Characters of a body shown by show_dead_letters.
BODY_PREVIEW_CHARS = 200
# Messages read per dead queue to count reasons in list_dead_letters (the count
# itself is exact; reasons cover the first this many).
REASON_SCAN_LIMIT = 1000
# Headers that describe a dead-lettering; a replay removes them.
ERROR_HEADER = "x-crmsync-error"

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
