"""The outbox relay: publishes due rows, each marked by its own result.

See :mod:`shared.outbox` for the table of outcomes. Run :meth:`OutboxRelay.run`
under a :class:`~shared.supervisor.Supervisor`.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from shared.broker import Broker
from shared.errors import BrokerUnavailableError, PublishRefusedError
from shared.events import CloudEvent
from shared.metrics import (
    OUTBOX_FAILED_ROWS,
    OUTBOX_FAILURES,
    OUTBOX_PUBLISHED,
    OUTBOX_REFUSED,
)
from shared.outbox_failed import count_failed
from shared.settings import OutboxSettings
from shared.streak import Streak
from shared.supervisor import SupervisedTask, backoff_delays, describe

log = structlog.get_logger(__name__)

# Published rows are kept this long for audit and replay, then deleted.
KEEP_PUBLISHED_S = 86_400
# Seconds between two prunes of published rows, and two refreshes of the failed-rows gauge.
PRUNE_INTERVAL_S = 1200.0
FAILED_GAUGE_INTERVAL_S = 30.0
# Event ids named in one log line about a round's refused or parked rows.
LOGGED_IDS = 10

# Rows still to publish and due: the idle poll is one index-only probe of outbox_due
# (migrations/0008), and the claim one range of it.
# Ordered by the index key, so the planner walks outbox_due even with a backlog (an
# EXISTS lets it pick a sequential scan when many rows are due).
_DUE = """
SELECT next_attempt_at FROM outbox
WHERE published_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
ORDER BY next_attempt_at LIMIT 1
"""
_CLAIM = """
SELECT id, event_id, routing_key, headers, body, content_type, attempts FROM outbox
WHERE published_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_MARK_PUBLISHED = """
UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])
"""
_MARK_REFUSED = """
UPDATE outbox AS o SET
    attempts = o.attempts + 1,
    last_error = f.error,
    next_attempt_at = now() + make_interval(secs => f.delay_s),
    failed_at = CASE WHEN o.attempts + 1 >= $4 THEN now() END
FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS f(id, error, delay_s)
WHERE o.id = f.id
RETURNING o.event_id, o.failed_at IS NOT NULL AS parked
"""


def _event_from_row(row: asyncpg.Record) -> CloudEvent:
    headers: dict[str, Any] = row["headers"]
    return CloudEvent.from_amqp(headers, row["body"], row["content_type"])


@dataclass(frozen=True)
class OutboxRetry:
    """How rows RabbitMQ refuses are retried.

    Attributes:
        max_attempts: refused publishes of one row before it is parked as failed.
        min_delay_s: the wait after the first refusal, in seconds; it doubles per
            attempt (with jitter) up to ``max_delay_s``.
        max_delay_s: the longest wait, in seconds.
    """

    max_attempts: int = 10
    min_delay_s: float = 1.0
    max_delay_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: OutboxSettings) -> OutboxRetry:
        """From ``CRMSYNC_OUTBOX_MAX_ATTEMPTS``, ``_RETRY_MIN_S``, ``_RETRY_MAX_S``."""
        return cls(
            settings.outbox_max_attempts,
            settings.outbox_retry_min_s,
            max(settings.outbox_retry_max_s, settings.outbox_retry_min_s),
        )

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after refused ``attempt`` (1-based)."""
        delays = backoff_delays(self.min_delay_s, self.max_delay_s)
        return next(itertools.islice(delays, max(0, attempt - 1), None))


@dataclass
class Round:
    """What one :meth:`OutboxRelay.drain` did.

    Attributes:
        claimed: rows taken (and handed to the broker, but for ``broker_away``).
        published: rows confirmed and marked published.
        refused: rows RabbitMQ refused (each counted an attempt), of which ``parked``
            reached their last attempt.
        broker_away: why the round stopped without counting anything, or None.
    """

    claimed: int = 0
    published: int = 0
    refused: int = 0
    parked: int = 0
    broker_away: str | None = None
    parked_ids: list[str] = field(default_factory=list)


class OutboxRelay:
    """Publishes due outbox rows, polling every ``poll_s`` while there are none.

    It polls rather than LISTENs: a NOTIFY in every writing transaction would
    serialise their commits (see migrations/0007). A poll is one index-only probe of
    the partial index on rows still to publish (migrations/0008).

    Run :meth:`run` under a :class:`~shared.supervisor.Supervisor`: a database
    error ends it (the supervisor restarts it with backoff and ``/readyz`` shows it);
    RabbitMQ being away does not (rounds pause, one ``outbox.publish_failing`` line,
    then ``outbox.recovered failures=N for_s=S``).

    Args:
        pool: the service's pool.
        broker: publishes with confirms.
        poll_s: seconds between polls when nothing is due (50 ms by default).
        batch_size: rows claimed per round.
        retry: attempts and backoff of refused rows.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        *,
        poll_s: float = 0.05,
        batch_size: int = 200,
        retry: OutboxRetry | None = None,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.retry = retry or OutboxRetry()
        # Rows handed to the broker to publish, since start (tests count hot loops).
        self.publish_attempts = 0
        self._away = Streak(log, "outbox.publish_failing", "outbox.recovered")

    async def run(self, task: SupervisedTask | None = None) -> None:
        """Drain, poll, prune, forever. Raises on database errors (for the supervisor).

        Starts once the broker has connected the first time (it says so itself while
        it cannot): the task stays ``starting`` until then.
        """
        await self.broker.wait_ready(timeout_s=None)
        loop = asyncio.get_running_loop()
        next_gauge = 0.0
        next_prune = loop.time() + PRUNE_INTERVAL_S
        while True:
            now = loop.time()
            if now >= next_gauge:
                await self.refresh_failed_gauge()
                next_gauge = now + FAILED_GAUGE_INTERVAL_S
            if now >= next_prune:
                await self.prune()
                next_prune = now + PRUNE_INTERVAL_S
            result = await self.drain()
            if task is not None:
                task.running()
            if result.broker_away is not None:
                OUTBOX_FAILURES.inc()
                self._away.failed(result.broker_away, kind="broker away")
                await asyncio.sleep(self.poll_s)
                continue
            if self.broker.ready:
                self._away.ok()
            if result.parked:
                await self.refresh_failed_gauge()
            if result.claimed < self.batch_size:
                await asyncio.sleep(self.poll_s)

    async def drain(self) -> Round:
        """Publish one batch of due rows, marking each by its own result.

        Raises:
            asyncpg.PostgresError, OSError, ...: the database failed; nothing of this
                round is marked (its publishes are repeated later, and deduplicated by
                the consumers).
        """
        # An idle poll is one index probe, not BEGIN / SELECT FOR UPDATE / COMMIT.
        if await self.pool.fetchval(_DUE) is None:
            return Round()
        if not self.broker.ready:
            return Round(broker_away="RabbitMQ not connected")
        result = Round()
        refused: list[tuple[asyncpg.Record, str]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self.batch_size)
            if not rows:
                return result
            result.claimed = len(rows)
            self.publish_attempts += len(rows)
            outcomes = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
            published: list[int] = []
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome is None:
                    published.append(row["id"])
                elif isinstance(outcome, BrokerUnavailableError) and not isinstance(
                    outcome, PublishRefusedError
                ):
                    result.broker_away = result.broker_away or str(outcome)
                elif isinstance(outcome, Exception):
                    # Refused, or the row itself is bad (an envelope that does not
                    # validate): that row's attempt, never its neighbours'.
                    refused.append((row, describe(outcome)))
                else:
                    raise outcome  # cancelled
            if published:
                await conn.execute(_MARK_PUBLISHED, published)
            marked = await self._mark_refused(conn, refused) if refused else []
        result.published = len(published)
        result.refused = len(refused)
        result.parked_ids = [r["event_id"] for r in marked if r["parked"]]
        result.parked = len(result.parked_ids)
        OUTBOX_PUBLISHED.inc(result.published)
        if refused:
            OUTBOX_REFUSED.inc(len(refused))
            self._log_refused(refused, result)
        return result

    async def _publish(self, row: asyncpg.Record) -> None:
        await self.broker.publish(_event_from_row(row), row["routing_key"])

    async def _mark_refused(
        self, conn: asyncpg.Connection, refused: list[tuple[asyncpg.Record, str]]
    ) -> list[asyncpg.Record]:
        result: list[asyncpg.Record] = await conn.fetch(
            _MARK_REFUSED,
            [row["id"] for row, _ in refused],
            [error[:2000] for _, error in refused],
            [self.retry.delay_s(row["attempts"] + 1) for row, _ in refused],
            self.retry.max_attempts,
        )
        return result

    def _log_refused(self, refused: list[tuple[asyncpg.Record, str]], result: Round) -> None:
        # One line per round, not per row: a missing binding refuses every row of it.
        parked = set(result.parked_ids)
        retrying = [row["event_id"] for row, _ in refused if row["event_id"] not in parked]
        if retrying:
            log.warning(
                "outbox.publish_refused",
                rows=len(retrying),
                event_ids=retrying[:LOGGED_IDS],
                error=refused[0][1],
            )
        if parked:
            log.error(
                "outbox.rows_failed",
                rows=len(parked),
                event_ids=result.parked_ids[:LOGGED_IDS],
                max_attempts=self.retry.max_attempts,
                error=next(error for row, error in refused if row["event_id"] in parked),
                hint="crmsync outbox list; crmsync outbox retry ID",
            )

    async def refresh_failed_gauge(self) -> None:
        """Set ``crmsync_outbox_failed_rows`` from the table."""
        OUTBOX_FAILED_ROWS.set(await count_failed(self.pool))

    async def prune(self) -> None:
        """Delete rows published more than a day ago (parked rows stay)."""
        await self.pool.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            float(KEEP_PUBLISHED_S),
        )
