"""``crmsync intake --workers N``: N intake processes sharing one port (SO_REUSEPORT).

One Python process uses one core at most. With ``--workers N`` (or
``CRMSYNC_INTAKE_WORKERS``) of 2 or more, ``crmsync intake`` becomes a parent that
starts N worker processes (``multiprocessing``'s ``spawn`` context: a fresh
interpreter each, nothing of the parent's event loop inherited). Each worker builds its
own app (:func:`services.intake.app.create_app`), event loop and broker connection,
named ``crmsync-intake-w1`` ... ``crmsync-intake-wN`` in RabbitMQ's management console,
and binds ``host:port`` with ``SO_REUSEPORT``, so the Linux kernel spreads incoming
connections over the workers (by a hash of each connection's addresses; a keep-alive
connection stays with its worker). ``--workers 1``, the default, is the single process
of old: no parent, no ``SO_REUSEPORT``.

Stopping: SIGTERM or SIGINT to the parent is forwarded as SIGTERM to every worker, which
shuts down as a single intake does (aiohttp's graceful shutdown: it stops accepting,
lets in-flight requests finish within ``SHUTDOWN_TIMEOUT_S``, then closes the broker).
The parent exits 0 once every worker has; 1 if one had to be killed after
:data:`STOP_TIMEOUT_S` or exited with an error. A worker takes the first signal only, so
a terminal's Ctrl-C (which reaches the whole process group) or systemd's
``KillMode=control-group`` plus the parent's forward do not cut its shutdown short. A
worker whose parent dies (SIGKILL, OOM) stops the same way by itself.

A worker that dies while the parent is not stopping (a crash, the OOM killer, a
``kill -9``) is logged once, ``intake.worker_exited worker=2 pid=... exit_code=-9
restart_in_s=0.4`` (a negative code is the signal that killed it), and started again
after a backoff (``CRMSYNC_SUPERVISOR_BACKOFF_MIN_S`` doubling up to ``_MAX_S``,
jittered; back to the minimum once a worker has stayed up :data:`STABLE_S`). Restart
rather than stop all: intake holds no state and the other workers keep serving
meanwhile, so stopping them would turn one lost process into refused webhooks on every
worker until the orchestrator restarts the whole service; the log line and the new pid
leave the crash visible. A worker that cannot start at all keeps failing at the
ceiling's pace, one line each time.

Metrics and readiness: ``/metrics`` and ``/readyz`` are per process. A request through
the shared port reaches one worker, so a Prometheus scrape of ``host:port`` sees one
worker's counters at a time (successive scrapes may look like counter resets). The
prometheus-client multiprocess mode would need a shared directory, a collector in place
of the default registry and per-gauge aggregation modes across the services: not done.
Where exact per-instance metrics matter (Kubernetes), scale intake by replicas of one
worker; ``--workers`` is for a host with cores to spare.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess

import structlog
from aiohttp import web

from shared.settings import IntakeSettings
from shared.supervised import backoff_delays

log = structlog.get_logger(__name__)

# How long the workers may take to shut down after the forwarded SIGTERM, in seconds:
# aiohttp's 10 s for in-flight requests, up to 5 s for the replies, the broker's close.
STOP_TIMEOUT_S = 30.0
# A worker that stayed up this long (s) ends a streak of crashes: the next restart
# waits the backoff's minimum again.
STABLE_S = 10.0
# Exit codes of a worker told to stop: 0 after aiohttp's graceful exit; killed by the
# signal itself when it came before aiohttp handled signals, that is before it listened.
_STOPPED_CLEANLY = (0, -signal.SIGTERM, -signal.SIGINT)
_SPAWN = multiprocessing.get_context("spawn")


def reuse_port_problem(platform: str = sys.platform) -> str | None:
    """Why ``--workers N`` (N >= 2) cannot run here, or None on Linux.

    Linux (3.9+) balances the connections of a port over the sockets bound with
    ``SO_REUSEPORT``; macOS and the BSDs accept the option but do not share the
    connections that way, and Windows has no such option.
    """
    import socket

    if platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        return None
    return (
        f"--workers N >= 2 needs SO_REUSEPORT load balancing (Linux); this is {platform}:"
        " run one worker (--workers 1) per port instead"
    )


def connection_name(worker: int) -> str:
    """The broker connection's name of worker ``worker`` (1-based): ``crmsync-intake-w2``."""
    return f"crmsync-intake-w{worker}"


def serve_workers(settings: IntakeSettings, host: str, port: int, workers: int) -> int:
    """Run ``workers`` intake processes on ``host:port`` until SIGTERM or SIGINT.

    Returns:
        The parent's exit status: 0 when every worker stopped cleanly, else 1.
    """
    return asyncio.run(_Parent(settings, host, port, workers).run())


class _Parent:
    """Starts, restarts and stops the workers (see the module docstring)."""

    def __init__(self, settings: IntakeSettings, host: str, port: int, workers: int) -> None:
        self.settings, self.host, self.port, self.workers = settings, host, port, workers
        self.procs: dict[int, SpawnProcess] = {}
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        log.info("intake.workers_starting", workers=self.workers, port=self.port)
        clean = await asyncio.gather(*(self._keep(i) for i in range(1, self.workers + 1)))
        return 0 if all(clean) else 1

    def _stop(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            return
        log.info("intake.workers_stopping", signal=sig.name, workers=len(self.procs))
        self.stopping.set()
        for proc in self.procs.values():
            if proc.exitcode is None:
                proc.terminate()  # SIGTERM

    def _start(self, worker: int) -> SpawnProcess:
        proc = _SPAWN.Process(
            target=_worker_main,
            args=(self.settings, self.host, self.port, worker),
            name=connection_name(worker),
        )
        proc.start()
        self.procs[worker] = proc
        log.info("intake.worker_started", worker=worker, pid=proc.pid)
        return proc

    async def _keep(self, worker: int) -> bool:
        """Keep worker ``worker`` running until the parent stops; True if it then
        stopped cleanly."""
        loop = asyncio.get_running_loop()
        delays: Iterator[float] | None = None
        while not self.stopping.is_set():
            proc = self._start(worker)
            started = loop.time()
            exited = _exit_of(proc)
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait((exited, stop), return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self.stopping.is_set():
                return await self._stopped(worker, proc, exited)
            if delays is None or loop.time() - started >= STABLE_S:
                low = self.settings.supervisor_backoff_min_s
                delays = backoff_delays(low, max(low, self.settings.supervisor_backoff_max_s))
            delay = next(delays)
            log.error(
                "intake.worker_exited",
                worker=worker,
                pid=proc.pid,
                exit_code=proc.exitcode,
                restart_in_s=round(delay, 2),
            )
            proc.close()
            del self.procs[worker]
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except TimeoutError:
                pass
        return True

    async def _stopped(self, worker: int, proc: SpawnProcess, exited: asyncio.Future[None]) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(exited), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "intake.worker_stop_timeout", worker=worker, pid=proc.pid, after_s=STOP_TIMEOUT_S
            )
            proc.kill()
            await exited
            return False
        if proc.exitcode not in _STOPPED_CLEANLY:
            log.error("intake.worker_exited", worker=worker, pid=proc.pid, exit_code=proc.exitcode)
            return False
        return True


def _exit_of(proc: SpawnProcess) -> asyncio.Future[None]:
    """A future done once ``proc`` has exited (and been reaped)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        loop.remove_reader(proc.sentinel)
        proc.join()  # the sentinel is readable: the process is gone, this does not block
        if not done.done():
            done.set_result(None)

    loop.add_reader(proc.sentinel, readable)
    return done


def _worker_main(settings: IntakeSettings, host: str, port: int, worker: int) -> None:
    """One worker process: intake on ``host:port`` with ``SO_REUSEPORT`` until SIGTERM."""
    from services.intake.app import SHUTDOWN_TIMEOUT_S, create_app
    from services.intake.loop import new_event_loop
    from shared.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format, service="intake")
    structlog.contextvars.bind_contextvars(worker=worker)
    app = create_app(settings, connection_name=connection_name(worker))
    app.on_startup.append(_stop_once_and_with_the_parent)
    web.run_app(
        app,
        host=host,
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        loop=new_event_loop(settings),
    )


async def _stop_once_and_with_the_parent(app: web.Application) -> None:
    """Replace aiohttp's signal handlers (installed just before startup) by one that
    starts the graceful exit on the first SIGTERM or SIGINT and ignores the next: a
    second ``GracefulExit`` would abort the shutdown under way. (Swapping the handler
    after the first is not enough: two signals read in one loop iteration are both
    scheduled already.) Also stop when the parent is gone (its end of the spawn pipe
    closes)."""
    loop = asyncio.get_running_loop()
    signalled = False

    def stop() -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            raise web.GracefulExit

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    parent = multiprocessing.parent_process()
    if parent is not None:

        def orphaned() -> None:
            loop.remove_reader(parent.sentinel)
            log.warning("intake.worker_orphaned", pid=os.getpid())
            os.kill(os.getpid(), signal.SIGTERM)

        loop.add_reader(parent.sentinel, orphaned)
