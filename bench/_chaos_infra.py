"""The chaos bench's own RabbitMQ node and PostgreSQL cluster, on ports of their own.

Nothing here touches the machine's RabbitMQ (5672) or PostgreSQL (5432): the node has
its own name (``chaos-<pid>@localhost``), ports (AMQP 5690+, distribution 25690+),
Erlang cookie (``$HOME`` is a temporary directory), config, plugins file (empty: no
management listener) and Mnesia directory; the cluster is a fresh ``initdb`` in a
temporary directory, on port 5450+, with its socket there too. Ports 5680-5689 and
25680-25689 belong to another test and are never picked.

:class:`RabbitNode` can be stopped gracefully (``rabbitmqctl stop``), killed with
SIGKILL (its ``beam.smp``, found by its node name) and started again on the same
Mnesia directory; :class:`PgCluster` can be stopped (``pg_ctl stop -m fast``) and
started again. Both undo everything in ``close()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
# Ports another test owns (AMQP and distribution); never ours.
RESERVED = set(range(5680, 5690)) | set(range(25680, 25690))


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` (a bind succeeds)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(start: int, *, also_free: int = 0, tries: int = 40) -> int:
    """The first free port from ``start`` up (and ``port + also_free`` free too, if set)."""
    for port in range(start, start + tries):
        pair = (port, port + also_free) if also_free else (port,)
        if not RESERVED & set(pair) and all(port_free(p) for p in pair):
            return port
    raise RuntimeError(f"no free port in {start}..{start + tries}")


def tcp_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _rabbit_tool(name: str) -> str:
    # The Debian wrappers in /usr/sbin switch to the rabbitmq user (and its cookie);
    # the scripts behind them run as we are, with our $HOME and so our own cookie.
    path = RABBIT_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's rabbitmq-server")
    return found


class RabbitNode:
    """One RabbitMQ node under ``root`` (a directory of its own)."""

    def __init__(self, root: Path, *, port: int, dist_port: int) -> None:
        self.root = root
        self.port = port
        self.dist_port = dist_port
        self.node = f"chaos-{os.getpid()}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        # time.monotonic() when the AMQP port last started accepting connections.
        self.listening_at = 0.0
        for sub in ("mnesia", "log", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{port}\n"
            "loopback_users.guest = true\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq's
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(root / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 90) -> float:
        """Start the node (same Mnesia directory as before); seconds until it serves AMQP."""
        started = time.monotonic()
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [_rabbit_tool("rabbitmq-server")],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the bench only
        )
        log.close()
        deadline = started + timeout_s
        while not tcp_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ exited at start; see {self.root}/server.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ not listening after {timeout_s:.0f} s")
            time.sleep(0.05)
        self.listening_at = time.monotonic()
        self.ctl("await_startup", "--timeout", str(int(timeout_s)), timeout_s=timeout_s + 10)
        return time.monotonic() - started

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """``rabbitmqctl -n <our node> args...``; its stdout.

        Raises:
            RuntimeError: it failed or timed out.
        """
        try:
            done = subprocess.run(
                [_rabbit_tool("rabbitmqctl"), "-n", self.node, *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} timed out") from exc
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()[:500]}")
        return done.stdout

    def beam_pid(self) -> int | None:
        """The pid of this node's ``beam.smp``, or None.

        The node name is not on its command line; its ``-home`` (our own directory) is.
        """
        home = self.env["HOME"].encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() != "beam.smp":
                    continue
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if home in argv:
                    return int(entry.name)
        return None

    def stop(self) -> None:
        """A graceful stop: ``rabbitmqctl stop`` (the Erlang VM halts)."""
        self.ctl("stop", timeout_s=120)
        self._reap(60)

    def kill(self) -> None:
        """SIGKILL the node's ``beam.smp``: no clean-up, no flush."""
        pid = self.beam_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self._reap(30)

    def _reap(self, timeout_s: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + timeout_s
        while self.beam_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)

    def running(self) -> bool:
        return self.beam_pid() is not None

    def queues(self) -> dict[str, dict[str, int]]:
        """Every queue: ``{name: {"messages", "ready", "unacked"}}`` (empty when down)."""
        out = self.ctl(
            "list_queues",
            "name",
            "messages",
            "messages_ready",
            "messages_unacknowledged",
            "--formatter",
            "json",
            "-q",
            timeout_s=60,
        )
        rows: list[dict[str, Any]] = json.loads(out or "[]")
        return {
            r["name"]: {
                "messages": int(r.get("messages") or 0),
                "ready": int(r.get("messages_ready") or 0),
                "unacked": int(r.get("messages_unacknowledged") or 0),
            }
            for r in rows
        }

    def close(self) -> None:
        if self.running():
            try:
                self.stop()
            except RuntimeError:
                self.kill()
        elif self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return str(found[-1])  # the newest major version


class PgCluster:
    """A PostgreSQL cluster of our own under ``root``, run as the ``postgres`` user."""

    def __init__(self, root: Path, *, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout_s: float = 120) -> None:
        done = subprocess.run(
            [*self._as_postgres, *args], capture_output=True, text=True, timeout=timeout_s
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()[:800]}")

    def init(self) -> None:
        """``initdb`` (trust, user postgres) and our settings; the cluster is not started."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            # initdb refuses root: the postgres user owns the directory and must reach it.
            shutil.chown(self.root, "postgres", "postgres")
            parent = self.root.parent
            parent.chmod(parent.stat().st_mode | 0o755)
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# chaos bench\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 300\n"
            )

    def start(self) -> float:
        """``pg_ctl start -w``; seconds it took."""
        started = time.monotonic()
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "120",
            "start",
        )
        return time.monotonic() - started

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``: ``fast`` disconnects every client and stops."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and tcp_open(self.port)

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("fast")
            except (RuntimeError, subprocess.TimeoutExpired):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.stop("immediate")
