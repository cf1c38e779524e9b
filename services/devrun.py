"""``crmsync dev``: the services as child processes, their logs prefixed, one Ctrl-C.

Each service runs as its own process, exactly as in production (``crmsync intake``
...), so what works here works there. Ctrl-C reaches every child (same process
group); SIGTERM to this process is forwarded. Children get ``shutdown_grace`` seconds
to drain before they are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

# Seconds a child may take to stop cleanly before it is killed.
SHUTDOWN_GRACE_S = 25.0
_COLOURS = ["36", "33", "35", "32", "34", "31"]


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


async def run_dev(*, with_sandbox: bool = True, syncers: int = 1) -> int:
    """Migrate, start the services, wait for Ctrl-C or a child's death; exit code."""
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
                ["syncer", "--port", str(8081 + i * 10)],
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
