"""One supervised task: its state, its restarts with backoff, its log lines.

See :mod:`shared.supervisor` for how services use it; this module holds
:class:`SupervisedTask`, :class:`TaskState` and the backoff arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aio_pika
import asyncpg
import backoff
import structlog

from shared.errors import CrmsyncError
from shared.metrics import TASK_RESTARTS, TASK_UP
from shared.streak import Streak

log = structlog.get_logger(__name__)

# The outside world being away (a database or broker restarting): logged as one line,
# without a traceback. Anything else is a bug and gets its traceback, once per streak.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    aio_pika.exceptions.AMQPError,
    CrmsyncError,
)


class TaskState(StrEnum):
    """Where a supervised task is.

    ``starting``: spawned, has not reported running yet. ``running``: doing its job.
    ``restarting``: failed (raised, or reported failing) and not back yet; waiting out
    its backoff or retrying. ``stopped``: stopped by :meth:`SupervisedTask.stop`, or its
    coroutine returned.
    """

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


TaskRun = Callable[["SupervisedTask"], Awaitable[None]]


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line, at most 500 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def backoff_delays(min_s: float, max_s: float) -> Iterator[float]:
    """Waits in seconds: ``min_s * 2**n`` capped at ``max_s``, each with "equal jitter"
    (half fixed, half random), so replicas restarting together spread out but never
    retry at once."""
    exponential = backoff.expo(base=2, factor=min_s, max_value=max_s)
    next(exponential)  # backoff's generators start with a bare yield (for .send)
    for value in exponential:
        yield value / 2 + backoff.full_jitter(value / 2)


def _now() -> datetime:
    return datetime.now(UTC)


class SupervisedTask:
    """One named coroutine, its state, and the loop that restarts it.

    Attributes:
        name: unique within its supervisor; the ``task`` label of the metrics.
        required: whether ``/readyz`` needs it running.
        state: see :class:`TaskState`.
        restarts: times the coroutine raised and was started again.
        failures: failures in the current streak (0 while healthy).
        last_error: ``"TypeName: message"`` of the latest failure, kept after recovery.
        last_failure_at: when that was (UTC).
        since: when ``state`` was entered (UTC).
    """

    def __init__(
        self,
        name: str,
        run: TaskRun,
        *,
        required: bool = True,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 5.0,
    ) -> None:
        self.name = name
        self.run = run
        self.required = required
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.state = TaskState.STARTING
        self.restarts = 0
        self.last_error: str | None = None
        self.last_failure_at: datetime | None = None
        self.since = _now()
        self._streak = Streak(log, "task.failed", "task.recovered", level="error", task=name)
        self._delays = backoff_delays(min_backoff_s, max_backoff_s)
        self._stable_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        TASK_UP.labels(name).set(0)

    @property
    def failures(self) -> int:
        return self._streak.failures

    # -- what the coroutine reports -------------------------------------------------

    def running(self) -> None:
        """The coroutine is doing its job. Cheap to call every round."""
        if self.state is TaskState.RUNNING:
            return
        self._set_state(TaskState.RUNNING)
        if self._streak.active and self._stable_timer is None:
            # Recovered only once it stays up: a task that fails right after each
            # start keeps its streak (one line) and its growing backoff.
            self._stable_timer = asyncio.get_running_loop().call_later(
                self.stable_s, self._stayed_up
            )

    def failing(self, error: str, *, kind: str | None = None) -> None:
        """The coroutine is alive but cannot do its job (e.g. its connection is
        reconnecting). Counted and shown like a failure; :meth:`running` ends it.

        Args:
            error: one line for ``last_error`` and the log.
            kind: failures of the same kind are logged once per streak (default:
                ``error`` itself).
        """
        self._record_failure(error, kind=kind or error, exc=None)
        self._set_state(TaskState.RESTARTING)

    # -- supervision ----------------------------------------------------------------

    def start(self) -> None:
        """Start the coroutine (and its restarts) as an asyncio task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name=f"supervised:{self.name}")
            self._task.add_done_callback(self._done)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel the coroutine and wait (at most ``timeout_s``) for it to unwind."""
        self._stopping = True
        self._cancel_stable_timer()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout_s)
        self._set_state(TaskState.STOPPED)

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await self.run(self)
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if self._stopping or (current is not None and current.cancelling()):
                    raise
                # A cancellation we did not ask for (a library cancelled a future of
                # ours): a failure like any other, not a reason to stop for good.
                await self._failed(exc)
            except Exception as exc:
                await self._failed(exc)
            else:
                if not self._stopping:
                    log.warning("task.exited", task=self.name)
                self._set_state(TaskState.STOPPED)
                return

    async def _failed(self, exc: BaseException) -> None:
        self.restarts += 1
        TASK_RESTARTS.labels(self.name).inc()
        trace = None if isinstance(exc, EXPECTED_ERRORS) else exc
        self._record_failure(describe(exc), kind=type(exc).__name__, exc=trace)
        self._set_state(TaskState.RESTARTING)
        delay = next(self._delays)
        log.debug("task.restarting", task=self.name, delay_s=round(delay, 2))
        await asyncio.sleep(delay)

    def _record_failure(self, error: str, *, kind: str, exc: BaseException | None) -> None:
        self._cancel_stable_timer()
        self.last_error = error
        self.last_failure_at = _now()
        if not self._streak.active:
            self._delays = backoff_delays(self.min_backoff_s, self.max_backoff_s)
        self._streak.failed(error, kind=kind, exc_info=exc)

    def _stayed_up(self) -> None:
        self._stable_timer = None
        if self.state is TaskState.RUNNING:
            self._streak.ok()

    def _cancel_stable_timer(self) -> None:
        if self._stable_timer is not None:
            self._stable_timer.cancel()
            self._stable_timer = None

    def _set_state(self, state: TaskState) -> None:
        if state is not self.state:
            self.state = state
            self.since = _now()
        TASK_UP.labels(self.name).set(1 if state is TaskState.RUNNING else 0)

    def _done(self, task: asyncio.Task[None]) -> None:
        # _supervise catches everything but cancellation; should it ever raise anyway,
        # say so instead of leaving "Task exception was never retrieved" to the GC.
        if not task.cancelled() and task.exception() is not None:
            log.error("task.supervisor_crashed", task=self.name, exc_info=task.exception())
            self._set_state(TaskState.STOPPED)

    def snapshot(self) -> dict[str, Any]:
        """The task as ``/readyz`` shows it::

        {"state": "restarting", "required": true, "since": "2026-01-01T00:00:00+00:00",
         "restarts": 3, "failures": 3, "last_error": "OSError: ...",
         "last_failure_at": "2026-01-01T00:00:00+00:00"}
        """
        return {
            "state": self.state.value,
            "required": self.required,
            "since": self.since.isoformat(),
            "restarts": self.restarts,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
        }
