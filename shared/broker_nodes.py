"""The RabbitMQ nodes a service may connect to, tried in turn.

``CRMSYNC_AMQP_URL`` may list several URLs, comma-separated: the nodes of one cluster
(``amqp://u:p@rmq-0:5672/,amqp://u:p@rmq-1:5672/,amqp://u:p@rmq-2:5672/``). Each
process starts at a random node (so replicas spread over the cluster) and, on every
connection attempt, tries the nodes in turn from the one after the node it used last,
so a node that is down, or the node whose connection was just lost, is tried last.

aio-pika's robust connection reconnects to its one URL only
(``aio_pika/robust_connection.py`` 10.2: ``Connection.connect`` reads ``self.url``;
multi-host support is still an open request, mosquito/aio-pika#141, and a round-robin
subclass was proposed and closed unmerged, #680), and its fixed ``reconnect_interval``
has no jitter. So :class:`shared.broker.Broker` makes a plain connection through
:meth:`Nodes.connect` and owns the reconnect itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import urlsplit

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection

from shared.errors import BrokerUnavailableError
from shared.supervised import describe

log = structlog.get_logger(__name__)

# What a refused or silent node raises while connecting.
_CONNECT_ERRORS = (OSError, TimeoutError, aio_pika.exceptions.AMQPError)


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """``"amqp://a/, amqp://b/"`` → ``["amqp://a/", "amqp://b/"]`` (empty parts dropped).

    Raises:
        ValueError: no URL at all.
    """
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    found = [p.strip() for p in parts if p.strip()]
    if not found:
        raise ValueError("no AMQP URL given")
    return found


def where(url: str) -> str:
    """``host:port`` of an AMQP URL, without user or password (for logs and errors)."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    return f"{parts.hostname or 'localhost'}:{parts.port or default}"


class Nodes:
    """The URLs of one broker (a node, or a cluster's nodes) and which to try next.

    Args:
        urls: one URL, a comma-separated list, or a sequence of URLs.
        shuffle: start at a random node (True), or at the first (tests, benches).
    """

    def __init__(self, urls: str | Sequence[str], *, shuffle: bool = True) -> None:
        self.urls = split_urls(urls)
        self._next = random.randrange(len(self.urls)) if shuffle else 0
        self.current: str | None = None

    def __len__(self) -> int:
        return len(self.urls)

    def order(self) -> list[str]:
        """The URLs in the order the next attempt tries them."""
        n = len(self.urls)
        return [self.urls[(self._next + i) % n] for i in range(n)]

    async def connect(self, *, name: str, timeout_s: float, attempt: int = 1) -> AbstractConnection:
        """Connect to the first node that accepts, trying each once, in :meth:`order`.

        Logs one line per node that failed (``broker.connect_failed``, no traceback).

        Args:
            name: the connection name shown in the management console.
            timeout_s: longest wait for one node, in seconds.
            attempt: the caller's attempt number, for the log lines.

        Raises:
            BrokerUnavailableError: no node accepted; the message names each node
                and its error.
        """
        errors: list[str] = []
        for url in self.order():
            node = where(url)
            try:
                connection = await aio_pika.connect(
                    url, client_properties={"connection_name": name}, timeout=timeout_s
                )
            except _CONNECT_ERRORS as exc:
                errors.append(f"{node}: {describe(exc)}")
                log.warning(
                    "broker.connect_failed", node=node, attempt=attempt, error=describe(exc)
                )
                continue
            index = self.urls.index(url)
            # Next time, begin with the node after this one: if this one goes away,
            # the others are tried first.
            self._next = (index + 1) % len(self.urls)
            self.current = node
            return connection
        self.current = None
        raise BrokerUnavailableError("no RabbitMQ node reachable: " + "; ".join(errors))
