"""``crmsync intake --workers N``: real processes on one port (SO_REUSEPORT), each worker
with its own broker connection (named per worker in the management console); SIGTERM
and Ctrl-C stop them all gracefully, a killed worker is restarted, orphaned workers stop.
Which worker holds a connection is read from /proc (tests/intake/procnet.py): the
workers expose nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from click.testing import CliRunner

from services.cli import main
from services.intake.workers import reuse_port_problem
from tests.conftest import AMQP_URL, SHOPIFY_SECRET, eventually, free_port
from tests.helpers import SHOPIFY_ORDER, TcpProxy, queue_depth, shopify_headers
from tests.intake import procnet
from tests.rabbit_node import needs_rabbitmq_server, own_node

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")

AMQP_PORT = urlsplit(AMQP_URL).port or 5672
# Processes start slowly on a loaded machine; these bound waits, they time nothing.
START_S = 60.0
STOP_S = 45.0


class Intake:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def workers(self) -> set[int]:
        return procnet.listening(self.proc.pid, self.port)

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line[:1] == "{"]
        return [line for line in lines if line.get("event") == event]

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), STOP_S)


@pytest.fixture
async def spawn_intake(namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """``await spawn_intake("--workers", "2", **env)``: ``crmsync intake`` as a real process
    (its own session, so the cleanup can kill whatever is left), on a free port."""
    started: list[Intake] = []
    workdir = Path(tempfile.mkdtemp())  # no developer .env is read from here

    async def spawn(*args: str, **env: str) -> Intake:
        port = free_port()
        log = workdir / f"intake-{port}.log"
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")},
            "CRMSYNC_AMQP_URL": AMQP_URL,
            "CRMSYNC_AMQP_NAMESPACE": namespace,
            "CRMSYNC_SHOPIFY_WEBHOOK_SECRET": SHOPIFY_SECRET,
            "CRMSYNC_LOG_FORMAT": "json",
            **env,
        }
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "services.cli", "intake", "--port", str(port), *args),
                env=environ,
                cwd=workdir,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        intake = Intake(proc, port, log)
        started.append(intake)
        return intake

    yield spawn
    for intake in started:
        if intake.proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await intake.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(intake.proc.pid, signal.SIGKILL)  # only if something was left
        if intake.proc.returncode is None:
            await intake.proc.wait()


@contextlib.asynccontextmanager
async def answered(
    port: int, workers: set[int], method: str, path: str, **kwargs: Any
) -> AsyncIterator[tuple[int, int | None]]:
    """(status, which of ``workers`` answered) of one request on a connection of its own
    (a new one each time, so the kernel picks a worker each time)."""
    client_port = free_port()  # ours, so that /proc tells who holds the other end
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.1", client_port))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", **kwargs) as resp,
    ):
        await resp.read()
        # The connection is still open (keep-alive): its accepted socket names the worker.
        yield resp.status, procnet.owner(port, client_port, workers)


async def every_worker_ready(intake: Intake, workers: set[int]) -> None:
    """Wait until each worker has answered ``/readyz`` 200 (its broker is up)."""
    ready: set[int] = set()

    async def probe() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with answered(intake.port, workers, "GET", "/readyz") as (status, pid):
                if status == 200 and pid in workers:
                    ready.add(pid)
        return ready == workers

    await eventually(probe, timeout_s=START_S, interval_s=0.02)


async def two_workers(intake: Intake) -> set[int]:
    async def probe() -> set[int] | None:
        workers = intake.workers()
        return workers if len(workers) == 2 else None

    workers: set[int] = await eventually(probe, timeout_s=START_S, interval_s=0.1)
    await every_worker_ready(intake, workers)
    return workers


async def post_order(intake: Intake, workers: set[int]) -> tuple[int, int | None]:
    """POST the reference order, signed, on a new connection: (status, worker's pid)."""
    headers = shopify_headers(SHOPIFY_ORDER)
    request = {"data": SHOPIFY_ORDER, "headers": headers}
    async with answered(intake.port, workers, "POST", "/webhooks/shopify", **request) as result:
        return result


@pytest.mark.timeout(180)
async def test_two_workers_share_the_port_and_every_accepted_webhook_is_queued(
    spawn_intake: Callable[..., Any], namespace: str
) -> None:
    intake = await spawn_intake("--workers", "2")
    workers = await two_workers(intake)
    assert intake.proc.pid not in workers  # the parent only supervises
    # Each worker holds a broker connection of its own.
    assert all(procnet.connected_to(pid, AMQP_PORT) for pid in workers)

    answered_by: list[int | None] = []

    async def until_both_answered() -> bool:
        status, pid = await post_order(intake, workers)
        assert status == 200  # accepted: published and confirmed
        answered_by.append(pid)
        return set(answered_by) == workers

    await eventually(until_both_answered, timeout_s=START_S, interval_s=0)

    async def all_queued() -> bool:
        return await queue_depth(f"{namespace}syncer.orders") == len(answered_by)

    await eventually(all_queued)
    assert await intake.stop() == 0
    assert not [pid for pid in workers if alive(pid)]


@needs_rabbitmq_server
@pytest.mark.timeout(300)
async def test_each_worker_names_its_broker_connection_in_the_management_console(
    spawn_intake: Callable[..., Any],
) -> None:
    # The system node has no management plugin: a node of the test's own, with it.
    management_port = free_port()
    async with own_node("crmsync-test-intake-workers", management_port=management_port) as (
        _,
        node,
    ):
        intake = await spawn_intake("--workers", "2", CRMSYNC_AMQP_URL=node.url)
        workers = await two_workers(intake)
        auth = {"Authorization": aiohttp.encode_basic_auth("guest", "guest")}
        url = f"http://127.0.0.1:{management_port}/api/connections"

        async def named_connections() -> dict[str, int] | None:
            try:
                async with aiohttp.ClientSession(headers=auth) as http, http.get(url) as resp:
                    listed = await resp.json() if resp.status == 200 else []
            except aiohttp.ClientError:
                return None
            names = {
                c["client_properties"].get("connection_name"): c["peer_port"]
                for c in listed
                if c.get("client_properties")
            }
            wanted = {"crmsync-intake-w1", "crmsync-intake-w2"}
            return {n: names[n] for n in wanted} if wanted <= names.keys() else None

        peers: dict[str, int] = await eventually(named_connections, timeout_s=120, interval_s=1)
        # Each name is the connection of a different worker process.
        holders = {procnet.owner(port, node.amqp_port, workers) for port in peers.values()}
        assert holders == workers
        assert await intake.stop() == 0


@pytest.mark.timeout(180)
async def test_a_killed_worker_is_logged_once_and_restarted_while_the_other_serves(
    spawn_intake: Callable[..., Any], namespace: str
) -> None:
    intake = await spawn_intake(
        "--workers",
        "2",
        CRMSYNC_SUPERVISOR_BACKOFF_MIN_S="0.05",
        CRMSYNC_SUPERVISOR_BACKOFF_MAX_S="0.2",
    )
    workers = await two_workers(intake)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> set[int] | None:
        now = intake.workers()
        return now if len(now) == 2 and victim not in now else None

    now: set[int] = await eventually(replaced, timeout_s=START_S, interval_s=0.1)
    assert workers - {victim} <= now  # the survivor was left alone
    assert intake.proc.returncode is None
    await every_worker_ready(intake, now)
    [died] = intake.logged("intake.worker_exited")
    assert (died["pid"], died["exit_code"]) == (victim, -signal.SIGKILL)
    status, pid = await post_order(intake, now)
    assert status == 200 and pid in now
    assert await intake.stop() == 0
    assert not [pid for pid in now if alive(pid)]


@pytest.mark.timeout(180)
async def test_a_webhook_in_flight_at_ctrl_c_is_answered_before_the_workers_stop(
    spawn_intake: Callable[..., Any], namespace: str
) -> None:
    # RabbitMQ's replies come through a proxy that we slow down once the workers are
    # ready: a webhook then waits for its confirm, in flight, when SIGTERM comes.
    proxy = TcpProxy(reply_delay_s=0.001)
    await proxy.start()
    try:
        intake = await spawn_intake("--workers", "2", CRMSYNC_AMQP_URL=proxy.url)
        workers = await two_workers(intake)
        proxy.reply_delay_s = 2.0
        head = "".join(f"{k}: {v}\r\n" for k, v in shopify_headers(SHOPIFY_ORDER).items())
        reader, writer = await asyncio.open_connection("127.0.0.1", intake.port)
        client_port = writer.get_extra_info("sockname")[1]
        writer.write(
            f"POST /webhooks/shopify HTTP/1.1\r\nHost: intake\r\n{head}"
            f"Content-Length: {len(SHOPIFY_ORDER)}\r\n\r\n".encode()
            + SHOPIFY_ORDER
        )
        await writer.drain()

        async def read_by_its_worker() -> int | None:
            accepted = procnet.connection(intake.port, client_port)
            if accepted is None or accepted.rx_queue:
                return None  # not accepted yet, or not read yet: its handler has not started
            return procnet.owner(intake.port, client_port, workers)

        await eventually(read_by_its_worker, timeout_s=START_S)
        # As a terminal's Ctrl-C: SIGINT to the whole group, so each worker gets it and
        # then the parent's SIGTERM as well; the second must not cut the shutdown short.
        os.killpg(intake.proc.pid, signal.SIGINT)
        status_line = await asyncio.wait_for(reader.readline(), STOP_S)
        proxy.reply_delay_s = 0.001  # the broker's close need not wait
        writer.close()
        assert status_line.split()[:2] == [b"HTTP/1.1", b"200"]
        assert await asyncio.wait_for(intake.proc.wait(), STOP_S) == 0
        assert await queue_depth(f"{namespace}syncer.orders") == 1
    finally:
        await proxy.cut()


@pytest.mark.timeout(180)
async def test_the_workers_stop_when_their_parent_is_killed(
    spawn_intake: Callable[..., Any],
) -> None:
    intake = await spawn_intake("--workers", "2")
    workers = await two_workers(intake)
    intake.proc.kill()
    await intake.proc.wait()

    async def all_gone() -> bool:
        return not [pid for pid in workers if alive(pid)]

    await eventually(all_gone, timeout_s=STOP_S, interval_s=0.1)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_fewer_than_one_worker_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    result = CliRunner().invoke(main, ["intake", "--workers", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--workers': 0 is not in the range x>=1" in result.output
    result = CliRunner().invoke(main, ["intake"], env={"CRMSYNC_INTAKE_WORKERS": "0"})
    assert result.exit_code == 1
    assert (
        "invalid settings: CRMSYNC_INTAKE_WORKERS: Input should be greater than or equal to 1"
        in (result.output)
    )


def test_workers_need_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert reuse_port_problem("linux") is None
    problem = reuse_port_problem("darwin")
    assert problem is not None and "SO_REUSEPORT" in problem and "darwin" in problem
    monkeypatch.setattr("services.intake.workers.reuse_port_problem", lambda: problem)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["intake", "--workers", "2"])
    assert result.exit_code == 2
    assert "needs SO_REUSEPORT load balancing (Linux); this is darwin" in result.output
