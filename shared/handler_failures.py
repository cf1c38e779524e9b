"""How the consumer wrapper tells failures apart, and how often it logs a traceback.

A retry is expected to cure :data:`EXPECTED_ERRORS` (a database, broker or network
error, a timeout, a handler past its deadline): each attempt is one log line without a
traceback. A traceback is logged at the final failure and for an exception class
nobody expected, at most once per queue and class every :data:`TRACEBACK_INTERVAL_S`
(:class:`TracebackBudget`), so an outage costs a line per message, not a traceback.
"""

from __future__ import annotations

import time

import aio_pika
import asyncpg

from shared.errors import TransientError

# Failures a retry is expected to cure: one log line per attempt, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    aio_pika.exceptions.AMQPError,
    OSError,
    TimeoutError,
)
# What an ack, nack or reject raises once the channel or its connection is gone (the
# message was not acked: RabbitMQ delivers it again, on whichever node serves it).
CHANNEL_GONE: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
    ConnectionError,
)
# At most one traceback per queue and exception class in this many seconds.
TRACEBACK_INTERVAL_S = 300.0


class HandlerDeadlineError(TransientError):
    """The handler ran past its deadline and was cancelled; it is retried."""


class TracebackBudget:
    """One consumer's record of the tracebacks it logged, by exception class.

    Args:
        interval_s: at most one traceback per exception class in this many seconds.
    """

    def __init__(self, interval_s: float = TRACEBACK_INTERVAL_S) -> None:
        self.interval_s = interval_s
        # Exception class name -> when its traceback was last logged (monotonic s).
        self._last: dict[str, float] = {}

    def due(self, exc: BaseException) -> BaseException | None:
        """``exc`` (for ``exc_info``) when its class's traceback is due, else None."""
        key = type(exc).__qualname__
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return None
        self._last[key] = now
        return exc
