"""Supervised background tasks: restarted with backoff on any failure, never silent.

Every long-lived coroutine of a service (the broker connection, the Postgres pool, the
outbox relay, the scheduler's tick loop, the syncer's consumers) runs under a
:class:`Supervisor`::

    supervisor = Supervisor.from_settings(settings)
    supervisor.spawn("outbox-relay", relay.run)   # relay.run(task: SupervisedTask) -> None
    supervisor.ready                              # every required task is running
    supervisor.snapshot()                         # what /readyz shows, per task
    await supervisor.stop()                       # cancel them, newest first

A task's coroutine receives its :class:`SupervisedTask` and calls
:meth:`SupervisedTask.running` once it does its job (connected and declared, a round
done) and :meth:`SupervisedTask.failing` while it is alive but cannot (a connection
waiting to come back). When the coroutine raises anything, the supervisor records
the error, waits (exponential backoff with jitter, from ``backoff``'s generators) and
runs it again, forever. It logs the first failure of a streak once, at error level
(with a traceback only for errors that are not the outside world being away), a
change of error once, and the recovery once the task has stayed up ``stable_s``:
``task.recovered task=outbox-relay failures=12 for_s=61.0``. Metrics:
``crmsync_task_up{task}`` and ``crmsync_task_restarts_total{task}``.
"""

from __future__ import annotations

from typing import Any

from shared.settings import CommonSettings
from shared.supervised import (
    EXPECTED_ERRORS,
    SupervisedTask,
    TaskRun,
    TaskState,
    backoff_delays,
    describe,
)

__all__ = [
    "EXPECTED_ERRORS",
    "SupervisedTask",
    "Supervisor",
    "TaskRun",
    "TaskState",
    "backoff_delays",
    "describe",
]


class Supervisor:
    """The supervised tasks of one service.

    Args:
        min_backoff_s: the first wait after a failure, in seconds.
        max_backoff_s: the longest wait between two restarts, in seconds.
        stable_s: how long a restarted task must stay running for its streak of
            failures to end (one ``task.recovered`` line, backoff back to the start).
    """

    def __init__(
        self, *, min_backoff_s: float = 0.5, max_backoff_s: float = 30.0, stable_s: float = 5.0
    ) -> None:
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self._tasks: dict[str, SupervisedTask] = {}

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Supervisor:
        """Backoff bounds from ``CRMSYNC_SUPERVISOR_BACKOFF_MIN_S`` / ``_MAX_S``."""
        return cls(
            min_backoff_s=settings.supervisor_backoff_min_s,
            max_backoff_s=max(settings.supervisor_backoff_max_s, settings.supervisor_backoff_min_s),
        )

    def spawn(
        self,
        name: str,
        run: TaskRun,
        *,
        required: bool = True,
        max_backoff_s: float | None = None,
    ) -> SupervisedTask:
        """Start ``run(task)`` under supervision; needs a running event loop.

        Args:
            name: unique in this supervisor (``"broker"``, ``"outbox-relay"``).
            run: the coroutine function; it gets its :class:`SupervisedTask`.
            required: False for a task ``/readyz`` reports but does not wait for.
            max_backoff_s: a lower ceiling for this task (the Postgres probe, so
                readiness returns soon after the database does).

        Raises:
            ValueError: a task of that name is already supervised here.
        """
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        ceiling = self.max_backoff_s if max_backoff_s is None else max_backoff_s
        task = SupervisedTask(
            name,
            run,
            required=required,
            min_backoff_s=min(self.min_backoff_s, ceiling),
            max_backoff_s=ceiling,
            stable_s=self.stable_s,
        )
        self._tasks[name] = task
        task.start()
        return task

    def __getitem__(self, name: str) -> SupervisedTask:
        return self._tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    @property
    def tasks(self) -> tuple[SupervisedTask, ...]:
        return tuple(self._tasks.values())

    @property
    def ready(self) -> bool:
        """Every required task is running (False while none is supervised yet)."""
        required = [t for t in self._tasks.values() if t.required]
        return bool(required) and all(t.state is TaskState.RUNNING for t in required)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Each task's :meth:`SupervisedTask.snapshot`, by name, in spawn order."""
        return {name: task.snapshot() for name, task in self._tasks.items()}

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every task, the last spawned first (consumers before the connection
        they use), each within ``timeout_s``."""
        for task in reversed(list(self._tasks.values())):
            await task.stop(timeout_s)
