"""The supervisor restarts a failing task with backoff, logs it once, and says so.

The supervisor has no outside parts (it runs coroutines), so these tests drive it
with coroutines of their own; the tests of the services show it with real Postgres
and RabbitMQ failures.
"""

from __future__ import annotations

import asyncio
import itertools

import asyncpg
from structlog.testing import capture_logs

from shared.metrics import TASK_RESTARTS, TASK_UP
from shared.supervisor import SupervisedTask, Supervisor, TaskState, backoff_delays
from tests.conftest import eventually


def restarts_metric(name: str) -> float:
    return TASK_RESTARTS.labels(name)._value.get()


async def test_a_task_that_raises_anything_is_restarted_until_it_runs() -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky(task: SupervisedTask) -> None:
        attempts.append(loop.time())
        if len(attempts) < 4:
            raise KeyError("not yet")  # not one of "the expected few"
        task.running()
        await asyncio.Event().wait()

    supervisor = Supervisor(min_backoff_s=0.05, max_backoff_s=0.2, stable_s=0.1)
    before = restarts_metric("flaky")
    task = supervisor.spawn("flaky", flaky)
    await eventually(lambda: asyncio.sleep(0, task.state is TaskState.RUNNING), timeout_s=5)
    assert len(attempts) == 4 and task.restarts == 3
    assert task.last_error == "KeyError: 'not yet'"
    assert restarts_metric("flaky") - before == 3
    assert TASK_UP.labels("flaky")._value.get() == 1
    # It waited between attempts: at least half of each exponential step (equal jitter).
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.025 for gap in gaps), gaps
    assert supervisor.ready
    await supervisor.stop()
    assert task.state is TaskState.STOPPED and TASK_UP.labels("flaky")._value.get() == 0


async def test_a_failure_streak_is_logged_once_and_its_recovery_once_with_the_count() -> None:
    failing = True

    async def relay(task: SupervisedTask) -> None:
        if failing:
            raise asyncpg.InternalClientError("cannot switch to state 12")
        task.running()
        await asyncio.Event().wait()

    supervisor = Supervisor(min_backoff_s=0.01, max_backoff_s=0.02, stable_s=0.2)
    with capture_logs() as logs:
        task = supervisor.spawn("relay", relay)
        await eventually(lambda: asyncio.sleep(0, task.restarts >= 20), timeout_s=5)
        assert task.state is TaskState.RESTARTING and not supervisor.ready
        failing = False
        await eventually(lambda: asyncio.sleep(0, task.failures == 0), timeout_s=5)
    await supervisor.stop()
    lines = [e for e in logs if e.get("task") == "relay" and e["log_level"] != "debug"]
    assert [e["event"] for e in lines] == ["task.failed", "task.recovered"], lines
    failed, recovered = lines
    assert failed["log_level"] == "error"
    assert "InternalClientError" in failed["error"]
    assert "exc_info" not in failed  # the outside world, not a bug: no traceback
    assert recovered["failures"] >= 20 and recovered["for_s"] >= 0


async def test_a_bug_gets_its_traceback_once() -> None:
    async def buggy(task: SupervisedTask) -> None:
        raise TypeError("unsupported operand")

    supervisor = Supervisor(min_backoff_s=0.01, max_backoff_s=0.01)
    with capture_logs() as logs:
        task = supervisor.spawn("buggy", buggy)
        await eventually(lambda: asyncio.sleep(0, task.restarts >= 5), timeout_s=5)
    await supervisor.stop()
    failed = [e for e in logs if e["event"] == "task.failed"]
    assert len(failed) == 1 and isinstance(failed[0]["exc_info"], TypeError)


async def test_a_task_that_fails_right_after_reporting_running_keeps_backing_off() -> None:
    starts = 0

    async def up_then_down(task: SupervisedTask) -> None:
        nonlocal starts
        starts += 1
        task.running()
        await asyncio.sleep(0.001)
        raise OSError("connection reset")

    supervisor = Supervisor(min_backoff_s=0.02, max_backoff_s=0.16, stable_s=1.0)
    with capture_logs() as logs:
        supervisor.spawn("bouncy", up_then_down)
        await asyncio.sleep(1.0)
    await supervisor.stop()
    # 0.02, 0.04, 0.08, 0.16, 0.16 ... (each at least half): far fewer than a hot loop.
    assert 3 <= starts <= 14, starts
    events = [e["event"] for e in logs if e.get("task") == "bouncy" and e["log_level"] != "debug"]
    assert events == ["task.failed"]


async def test_a_stray_cancellation_inside_the_task_is_a_failure_not_a_stop() -> None:
    runs = 0

    async def cancelled_inside(task: SupervisedTask) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.cancel()
            await future  # a library cancelled a future we were waiting on
        task.running()
        await asyncio.Event().wait()

    supervisor = Supervisor(min_backoff_s=0.01, max_backoff_s=0.01)
    task = supervisor.spawn("stray", cancelled_inside)
    await eventually(lambda: asyncio.sleep(0, task.state is TaskState.RUNNING), timeout_s=5)
    assert runs == 2 and task.restarts == 1 and task.last_error == "CancelledError"
    await supervisor.stop()


async def test_failing_reports_a_live_task_as_restarting_until_it_runs_again() -> None:
    supervisor = Supervisor(stable_s=0.05)
    go = asyncio.Event()

    async def watcher(task: SupervisedTask) -> None:
        task.running()
        await go.wait()
        task.failing("connection lost: ConnectionResetError", kind="ConnectionResetError")
        go.clear()
        await go.wait()
        task.running()
        await asyncio.Event().wait()

    task = supervisor.spawn("watcher", watcher)
    await asyncio.sleep(0.01)
    assert supervisor.snapshot()["watcher"]["state"] == "running"
    go.set()
    await asyncio.sleep(0.01)
    snapshot = supervisor.snapshot()["watcher"]
    assert snapshot["state"] == "restarting" and snapshot["restarts"] == 0
    assert snapshot["failures"] == 1 and "ConnectionResetError" in snapshot["last_error"]
    go.set()
    await asyncio.sleep(0.1)
    assert task.state is TaskState.RUNNING and task.failures == 0
    await supervisor.stop()


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    delays = backoff_delays(1.0, 8.0)
    values = [next(delays) for _ in range(6)]
    for value, step in zip(values, [1, 2, 4, 8, 8, 8], strict=True):
        assert step / 2 <= value <= step
