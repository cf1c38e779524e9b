"""A RabbitMQ node of a test's own (Debian's ``rabbitmq-server`` via
``bench/_rabbit_cluster.py``): free ports, its own name, cookie and data under a
temporary folder; the system node is untouched."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench._rabbit_cluster import RABBITMQ_BIN, LocalCluster, Node

needs_rabbitmq_server = pytest.mark.skipif(
    not (RABBITMQ_BIN / "rabbitmq-server").exists(), reason="no Debian rabbitmq-server"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def own_node(
    prefix: str, *, management_port: int | None = None
) -> AsyncIterator[tuple[LocalCluster, Node]]:
    """One node (with the management plugin on ``management_port`` if given), stopped
    and deleted afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    cluster = LocalCluster(
        tmp,
        size=1,
        name_prefix=f"{prefix}-{free_port()}",
        amqp_port_base=free_port(),
        dist_port_base=free_port(),
        cli_port_base=free_port(),
        management_port_base=management_port,
    )
    try:
        await asyncio.to_thread(cluster.start)
        yield cluster, cluster.nodes[0]
    finally:
        await asyncio.to_thread(cluster.stop)
        shutil.rmtree(tmp, ignore_errors=True)
