"""``crmsync dev``: the services as child processes, their logs prefixed, one Ctrl-C.

Each service runs as its own process, exactly as in production (``crmsync intake``
...), so what works here works there. Ctrl-C reaches every child (same process
group); SIGTERM to this process is forwarded. Children get ``shutdown_grace`` seconds
to drain before they are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

# Seconds a child may take to stop cleanly before it is killed.
SHUTDOWN_GRACE_S = 25.0
# Replica i of ``crmsync dev --syncers N`` listens on CRMSYNC_SYNCER_PORT + i * this.
SYNCER_PORT_STEP = 10
_COLOURS = ["36", "33", "35", "32", "34", "31"]


@dataclass(frozen=True)
class Listen:
    """Where one child will listen, and the setting that moves it."""

    name: str
    host: str
    port: int
    setting: str


def port_in_use(listen: Listen) -> str | None:
    """One line saying that ``listen``'s port is taken (and how to move it), or None."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((listen.host, listen.port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return (
                f"crmsync dev: port {listen.port} on {listen.host} ({listen.name}) is already"
                f" in use: stop what listens there or set {listen.setting}"
            )
    return None


# RabbitMQ's management plugin listens here (https://www.rabbitmq.com/docs/management).
MANAGEMENT_PORT = 15672


def management_hint(amqp_url: str) -> str | None:
    """How to enable RabbitMQ's management plugin when nothing answers on its port on
    the broker's host (the first of ``amqp_url``'s nodes); None when it answers."""
    host = urlsplit(amqp_url.split(",")[0].strip()).hostname or "127.0.0.1"
    try:
        with socket.create_connection((host, MANAGEMENT_PORT), timeout=0.5):
            return None
    except OSError:
        return (
            f"crmsync dev: RabbitMQ's management plugin does not answer on {host}:"
            f"{MANAGEMENT_PORT}; to see queues and dead letters in a browser, enable it:"
            " sudo rabbitmq-plugins enable rabbitmq_management"
            f" (then http://{host}:{MANAGEMENT_PORT}, guest/guest)"
        )


async def _pump(name: str, colour: str, stream: asyncio.StreamReader) -> None:
    tty = sys.stdout.isatty()
    prefix = f"\x1b[{colour}m{name:<9}|\x1b[0m " if tty else f"{name:<9}| "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _spawn(name: str, *args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env.setdefault("CRMSYNC_LOG_FORMAT", "console")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )


async def run_dev(
    *,
    with_sandbox: bool = True,
    syncers: int = 1,
    syncer_port: int = 8081,
    listens: list[Listen] | None = None,
) -> int:
    """Migrate, start the services, wait for Ctrl-C or a child's death; exit code.

    Syncer ``i`` (from 0) serves health and metrics on ``syncer_port + 10 * i``
    (``CRMSYNC_SYNCER_PORT``). Every address of ``listens`` is checked first: a taken
    port prints one line naming the service and its setting, and returns 1.
    """
    for listen in listens or []:
        if problem := port_in_use(listen):
            print(problem, file=sys.stderr)
            return 1
    migrate = await _spawn("migrate", "migrate")
    assert migrate.stdout is not None
    await _pump("migrate", "37", migrate.stdout)
    if await migrate.wait() != 0:
        return 1
    if with_sandbox:  # the sample CRM database W1 reads, unless it is there already
        seed = await _spawn("seed-crm", "seed-crm", "--if-missing")
        assert seed.stdout is not None
        await _pump("seed-crm", "37", seed.stdout)
        await seed.wait()
    names: list[tuple[str, list[str]]] = []
    if with_sandbox:
        names.append(("sandbox", ["sandbox"]))
    names.append(("intake", ["intake"]))
    for i in range(syncers):
        names.append(
            (
                f"syncer-{i + 1}" if syncers > 1 else "syncer",
                ["syncer", "--port", str(syncer_port + i * SYNCER_PORT_STEP)],
            )
        )
    names.append(("scheduler", ["scheduler"]))
    children: list[tuple[str, asyncio.subprocess.Process]] = []
    pumps = []
    for i, (name, args) in enumerate(names):
        proc = await _spawn(name, *args)
        assert proc.stdout is not None
        children.append((name, proc))
        pumps.append(asyncio.create_task(_pump(name, _COLOURS[i % len(_COLOURS)], proc.stdout)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.create_task(p.wait()): n for n, p in children}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*waits, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task in waits:
            print(f"crmsync dev: {waits[task]} exited with {task.result()}; stopping the others")
            code = 1
    for _, proc in children:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(SHUTDOWN_GRACE_S):
            await asyncio.gather(*(p.wait() for _, p in children))
    except TimeoutError:
        for _, proc in children:
            if proc.returncode is None:
                proc.kill()
    await asyncio.gather(*pumps, return_exceptions=True)
    stopper.cancel()
    return code
