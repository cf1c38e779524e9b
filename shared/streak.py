"""Log a failing loop once per state change, with a count, not once per attempt.

A relay polling every 50 ms while RabbitMQ is away, or a connection retrying while
Postgres restarts, would otherwise write a line (or a traceback) per attempt. A
:class:`Streak` writes one line when the failures start, one more for each other kind
of failure, and one when they end::

    outbox.publish_failing error="RabbitMQ not connected"
    outbox.recovered failures=1234 for_s=61.2
"""

from __future__ import annotations

import time
from typing import Any, Literal


class Streak:
    """A run of consecutive failures of one thing (a relay round, a connection).

    Args:
        log: a structlog logger.
        failing: event of the first failure, e.g. ``"outbox.publish_failing"``.
        recovered: event of the end, e.g. ``"outbox.recovered"``.
        level: level of the first failure's line; a change of error is a warning,
            the end is info.
        fields: bound on every line (``task="outbox-relay"``).
    """

    def __init__(
        self,
        log: Any,
        failing: str,
        recovered: str,
        *,
        level: Literal["warning", "error"] = "warning",
        **fields: Any,
    ) -> None:
        self.log = log
        self.failing = failing
        self.recovered = recovered
        self.level = level
        self.fields = fields
        self.failures = 0
        self.started_at: float | None = None  # time.monotonic() of the first failure
        self.last_error: str | None = None
        self._kinds: set[str] = set()

    @property
    def active(self) -> bool:
        """True between the first failure and :meth:`ok`."""
        return self.started_at is not None

    def failed(
        self, error: str, *, kind: str | None = None, exc_info: BaseException | None = None
    ) -> bool:
        """Count one failure; log it if it starts the streak or changes its ``kind``.

        Args:
            error: one line saying what failed (no secrets, no payloads).
            kind: what makes two failures "the same" (default: ``error`` itself); the
                supervisor passes the exception's type, so a changing message does not
                make a line per attempt. Each kind is logged once per streak, so two
                errors that alternate do not either.
            exc_info: an exception whose traceback belongs on the first line (a bug,
                not the outside world being away).

        Returns:
            True if a line was written.
        """
        kind = kind if kind is not None else error
        self.last_error = error
        if self.started_at is None:
            self.started_at = time.monotonic()
            self.failures = 1
            self._kinds = {kind}
            extra: dict[str, Any] = {"exc_info": exc_info} if exc_info is not None else {}
            getattr(self.log, self.level)(self.failing, error=error, **self.fields, **extra)
            return True
        self.failures += 1
        if kind not in self._kinds:
            self._kinds.add(kind)
            self.log.warning(self.failing, error=error, failures=self.failures, **self.fields)
            return True
        return False

    def ok(self) -> bool:
        """End the streak, if one is open, with one line: ``failures`` and ``for_s``.

        Returns:
            True if a line was written.
        """
        if self.started_at is None:
            return False
        for_s = round(time.monotonic() - self.started_at, 1)
        self.log.info(
            self.recovered,
            failures=self.failures,
            for_s=for_s,
            last_error=self.last_error,
            **self.fields,
        )
        self.started_at = None
        self.failures = 0
        self._kinds = set()
        return True
