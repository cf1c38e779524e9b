"""A RabbitMQ node of a test's own (Debian's ``rabbitmq-server`` via
``bench/_rabbit_cluster.py``): free ports, its own name, cookie and data under a
temporary folder; the system node is untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bench._common import free_port
from bench._rabbit_cluster import RABBITMQ_BIN, LocalCluster, Node, single_node

__all__ = ["free_port", "needs_rabbitmq_server", "own_node"]

needs_rabbitmq_server = pytest.mark.skipif(
    not (RABBITMQ_BIN / "rabbitmq-server").exists(), reason="no Debian rabbitmq-server"
)


@asynccontextmanager
async def own_node(
    prefix: str, *, management_port: int | None = None
) -> AsyncIterator[tuple[LocalCluster, Node]]:
    """One node (with the management plugin on ``management_port`` if given), stopped
    and deleted afterwards."""
    cluster = single_node(prefix, management_port=management_port)
    try:
        await asyncio.to_thread(cluster.start)
        yield cluster, cluster.nodes[0]
    finally:
        await asyncio.to_thread(cluster.stop)
