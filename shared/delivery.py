"""What a handler may know about how its event arrived (AMQP kept out of handlers)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.topology import pick_delay


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
