"""A RabbitMQ cluster of local nodes from Debian's ``rabbitmq-server``, for the benches.

Each node has its own name (``crmsync-bench-<i>@localhost``), AMQP port (5680 + i),
Erlang distribution port (25680 + i), data, log and config under one temporary folder,
no plugins (the management plugin when asked), and its own Erlang cookie (``HOME`` is
that folder, so neither the nodes nor the CLI calls made here can reach the system node
on 5672, whose cookie lives in
``/var/lib/rabbitmq``). The scripts under ``/usr/lib/rabbitmq/bin`` are run directly:
``/usr/sbin``'s wrappers switch to the ``rabbitmq`` user and its home.

:meth:`LocalCluster.kill` is ``kill -9`` of the node's whole process group (the start
script, ``beam.smp`` and its port helpers); :meth:`LocalCluster.start_node` starts it
again on the same data, and it rejoins the cluster by itself.

:func:`own_node` is one such node on free ports, started, then stopped and deleted:
what a bench or a test uses when it needs a broker of its own (e.g. with other
``rabbitmq.conf`` settings than the system node's).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

if __package__:  # imported as ``bench._rabbit_cluster``, by the tests
    from ._common import free_port  # type: ignore[import-not-found,no-redef,unused-ignore]
else:  # from a bench script, with bench/ on sys.path
    from _common import free_port

RABBITMQ_BIN = Path(os.environ.get("CRMSYNC_BENCH_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
AMQP_PORT_BASE = 5680
DIST_PORT_BASE = 25680
# The CLI tools connect as hidden Erlang nodes on ports of their own; keep them near ours.
CLI_DIST_PORT_BASE = 35680


# A rabbitmq.conf key (``raft.wal_max_size_bytes``, ``listeners.tcp.1``, ...).
_CONF_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


def check_setting(key: str, value: str) -> None:
    """Check that ``key = value`` makes one well-formed ``rabbitmq.conf`` line.

    Whether RabbitMQ knows the key is for the node to say: it refuses to boot on an
    unknown key or a bad value.

    Raises:
        ValueError: a key that is no ``rabbitmq.conf`` key's shape, or an empty value
            or one with a line break (it would become another setting).
    """
    if not _CONF_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a rabbitmq.conf key")
    if not value.strip() or "\n" in value or "\r" in value:
        raise ValueError(f"{key}: the value must be one non-empty line, not {value!r}")


@dataclass
class Node:
    index: int
    name: str
    amqp_port: int
    dist_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def log_path(self) -> Path:
        return self.base / "stdout.log"

    @property
    def wal_dir(self) -> Path:
        """Where the node's quorum queues keep their write-ahead log (``*.wal``) and segments.

        Ra's data dir defaults to ``<mnesia dir>/quorum/<node>``, and the mnesia dir to
        ``$RABBITMQ_MNESIA_BASE/<node>`` (RabbitMQ's "File and Directory Locations").
        """
        return self.base / "mnesia" / self.name / "quorum" / self.name

    def beam_pid(self) -> int | None:
        """The pid of the node's Erlang VM (``beam.smp``), from its pid file; None before."""
        try:
            return int((self.base / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """``size`` local RabbitMQ nodes under ``tmp``, joined into one cluster by :meth:`start`.

    ``settings`` are ``rabbitmq.conf`` lines for every node (they win over the defaults
    written here).

    Raises:
        RuntimeError: Debian's RabbitMQ scripts are missing, or a node does not start.
        ValueError: a setting is not one well-formed line (:func:`check_setting`).
    """

    def __init__(
        self,
        tmp: Path,
        size: int = 3,
        *,
        tag: str | None = None,
        name_prefix: str = "crmsync-bench",
        amqp_port_base: int = AMQP_PORT_BASE,
        dist_port_base: int = DIST_PORT_BASE,
        cli_port_base: int = CLI_DIST_PORT_BASE,
        management_port_base: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise RuntimeError(
                f"no {RABBITMQ_BIN}/rabbitmq-server: apt-get install rabbitmq-server "
                "(or set CRMSYNC_BENCH_RABBITMQ_BIN)"
            )
        self.tmp = tmp
        self.tag = tag or secrets.token_hex(3)
        self.cli_port_base = cli_port_base
        # Given: each node runs the management plugin on management_port_base + index.
        self.management_port_base = management_port_base
        # rabbitmq.conf lines of the caller's, e.g. {"raft.wal_max_size_bytes": "67108864"}.
        self.settings = dict(settings or {})
        for key, value in self.settings.items():
            check_setting(key, value)
        self.name_prefix = name_prefix
        self.nodes = [
            Node(
                i,
                f"{name_prefix}-{i}@localhost",
                amqp_port_base + i,
                dist_port_base + i,
                tmp / f"node{i}",
            )
            for i in range(size)
        ]
        cookie = tmp / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)

    # ------------------------------------------------------------ environment

    def _env(self, node: Node) -> dict[str, str]:
        env_file = node.base / "rabbitmq-env.conf"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.tmp),  # our own .erlang.cookie
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),  # not /etc/rabbitmq's (system node)
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.base / "rabbitmq.pid"),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.cli_port_base + 10 * node.index),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.cli_port_base + 10 * node.index + 9),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _prepare(self, node: Node) -> None:
        node.base.mkdir(parents=True, exist_ok=True)
        (node.base / "rabbitmq-env.conf").write_text("")
        management = self.management_port_base
        plugins = "[rabbitmq_management]" if management is not None else "[]"
        (node.base / "enabled_plugins").write_text(f"{plugins}.\n")
        listener = (
            ""
            if management is None
            else f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management + node.index}\n"
        )
        conf = {
            "listeners.tcp.1": f"127.0.0.1:{node.amqp_port}",
            "log.console": "false",
            "log.file.level": "warning",
            # The bench's load is small; do not refuse publishes on a busy shared disk.
            "disk_free_limit.absolute": "50MB",
            **self.settings,
        }
        (node.base / "rabbitmq.conf").write_text(
            listener + "".join(f"{key} = {value}\n" for key, value in conf.items())
        )

    def ctl(self, node: Node, *args: str, tool: str = "rabbitmqctl", timeout_s: float = 60,
            check: bool = True) -> str:  # fmt: skip
        """Run ``rabbitmqctl`` (or ``rabbitmq-queues``, ...) against ``node``; its stdout.

        Raises:
            RuntimeError: the command failed (with ``check``) or timed out.
        """
        try:
            out = subprocess.run(
                [str(RABBITMQ_BIN / tool), "-n", node.name, *args],
                env=self._env(node), capture_output=True, text=True, timeout=timeout_s,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{tool} {' '.join(args)} on {node.name} timed out") from exc
        if check and out.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} on {node.name} failed: {out.stderr.strip()[-500:]}"
            )
        return out.stdout

    # ------------------------------------------------------------ life cycle

    def start_node(self, node: Node, timeout_s: float = 120) -> None:
        """Start ``node`` (again, on its data) and wait until it runs RabbitMQ."""
        self._prepare(node)
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self._env(node),
                cwd=node.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes all of it
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if not node.alive():
                output = node.log_path.read_text(errors="replace")
                # The first errors say why (e.g. a rabbitmq.conf key it does not know);
                # the tail is the crash report that follows.
                first = "\n".join([ln for ln in output.splitlines() if "[error]" in ln][:8])
                raise RuntimeError(
                    f"{node.name} exited while starting:\n{first}\n...\n{output[-1000:]}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{node.name} did not start in {timeout_s:.0f} s")
            try:
                self.ctl(node, "await_startup", "--timeout", "10", timeout_s=min(30, left + 1))
                return
            except RuntimeError:
                time.sleep(0.5)

    def start(self) -> None:
        """Start every node and join the others to the first one."""
        first, *others = self.nodes
        if not others:
            self.start_node(first)
            return
        self.start_node(first)
        for node in others:
            self.start_node(node)
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        running = self.running_nodes(first)
        if sorted(running) != sorted(n.name for n in self.nodes):
            raise RuntimeError(f"cluster did not form: running nodes {running}")

    def running_nodes(self, via: Node) -> list[str]:
        out = self.ctl(via, "cluster_status", "--formatter", "json")
        import json

        return list(json.loads(out).get("running_nodes", []))

    def kill(self, node: Node) -> None:
        """``kill -9`` the node's whole process group; returns once it is gone."""
        if node.proc is None:
            return
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.proc.wait()

    def stop(self) -> None:
        """Stop every node (gracefully, then SIGKILL) and delete the folder."""
        try:
            for node in self.nodes:
                try:
                    if node.alive():
                        with contextlib.suppress(RuntimeError):
                            self.ctl(node, "stop", timeout_s=30)
                    if node.proc is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            node.proc.wait(10)
                finally:  # a Ctrl-C during the graceful stop still leaves nothing running
                    self.kill(node)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ queues

    def quorum_leaders(self, via: Node, prefix: str) -> dict[str, tuple[str, int]]:
        """``{queue: (leader node, messages)}`` of the quorum queues named ``prefix...``."""
        out = self.ctl(
            via, "list_queues", "name", "type", "leader", "messages",
            "--quiet", "--no-table-headers", timeout_s=30,
        )  # fmt: skip
        found: dict[str, tuple[str, int]] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0].startswith(prefix) and parts[1] == "quorum":
                found[parts[0]] = (parts[2], int(parts[3]) if parts[3].isdigit() else 0)
        return found

    def quorum_members(self, via: Node, queue: str) -> list[str]:
        """The nodes holding a replica of ``queue`` (``rabbitmq-queues quorum_status``)."""
        out = self.ctl(via, "quorum_status", queue, tool="rabbitmq-queues", timeout_s=30)
        return sorted(set(re.findall(rf"{re.escape(self.name_prefix)}-\d+@localhost", out)))

    def is_quorum_critical(self, node: Node) -> bool:
        """True while stopping ``node`` would leave some quorum queue without a majority."""
        out = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmq-queues"), "-n", node.name,
             "check_if_node_is_quorum_critical"],
            env=self._env(node), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.returncode != 0

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def single_node(
    prefix: str,
    *,
    management_port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> LocalCluster:
    """A one-node :class:`LocalCluster` (not started) under a new temporary folder.

    Free ports for AMQP, Erlang distribution and the CLI tools; node name
    ``<prefix>-<port>@localhost``; ``settings`` go into its ``rabbitmq.conf``;
    ``management_port`` enables the management plugin there.
    """
    return LocalCluster(
        Path(tempfile.mkdtemp(prefix=f"{prefix}-")),
        size=1,
        name_prefix=f"{prefix}-{free_port()}",
        amqp_port_base=free_port(),
        dist_port_base=free_port(),
        cli_port_base=free_port(),
        management_port_base=management_port,
        settings=settings,
    )


@contextmanager
def own_node(
    prefix: str,
    *,
    management_port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[tuple[LocalCluster, Node]]:
    """:func:`single_node`, started; stopped and its folder deleted on the way out
    (on errors, Ctrl-C and ``SystemExit`` too).

    Raises:
        RuntimeError: the node did not start (a bad setting shows in its log's tail).
    """
    cluster = single_node(prefix, management_port=management_port, settings=settings)
    try:
        cluster.start()
        yield cluster, cluster.nodes[0]
    finally:
        cluster.stop()
