"""``bench/intake.py --own-broker``: a private RabbitMQ node with ``rabbitmq.conf`` settings
of the bench's choosing, so broker settings can be compared without touching the
machine's RabbitMQ (5672, never restarted nor reconfigured).

The node is :func:`_rabbit_cluster.own_node`'s: free ports, its own name, cookie, config
and data under a temporary folder, stopped and deleted on the way out. Settings are
``rabbitmq.conf`` keys; the ones that shape quorum-queue storage in RabbitMQ 3.10 are
``raft.wal_max_size_bytes``, ``raft.segment_max_entries``, ``raft.wal_max_entries``,
``raft.wal_max_batch_size``, ``raft.wal_hibernate_after``, ``raft.snapshot_chunk_size``
and ``quorum_queue.compute_checksums`` (the schema Debian's 3.10.8 ships,
``plugins/rabbit-3.10.8/priv/schema/rabbit.schema``). What they do:
https://www.rabbitmq.com/docs/quorum-queues, "How Memory, WAL and Segments Files
Interact" (the WAL is flushed to segment files once it reaches
``raft.wal_max_size_bytes``, 512 MiB by default) and "Tuning: Raft Segment File Entry
Count" (``raft.segment_max_entries``, 4096 by default, fewer for large messages).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _rabbit_cluster import check_setting, own_node

# What the node's quorum-queue Ra system says it runs with (ra_system:fetch/1).
RA_KEYS = ("wal_max_size_bytes", "segment_max_entries", "wal_max_batch_size", "wal_max_entries")


@dataclass(frozen=True)
class OwnBroker:
    """The running node: its name, URL, Erlang VM pid, WAL directory, the settings given
    and the Ra settings it reports (``{"wal_max_size_bytes": "536870912", ...}``)."""

    node: str
    amqp_url: str
    beam_pid: int | None
    wal_dir: Path
    settings: dict[str, str]
    ra: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """For the results: no credentials, ``address`` as ``host:port``."""
        fields = {k: v for k, v in asdict(self).items() if k != "amqp_url"}
        address = self.amqp_url.rsplit("@", 1)[-1].rstrip("/")
        return {**fields, "own": True, "address": address, "wal_dir": str(self.wal_dir)}


def broker_setting(text: str) -> tuple[str, str]:
    """argparse type of ``--broker-setting``: ``KEY=VALUE`` → ``(KEY, VALUE)``.

    Raises:
        argparse.ArgumentTypeError: no ``=``, or not one well-formed ``rabbitmq.conf``
            line (:func:`_rabbit_cluster.check_setting`).
    """
    key, sep, value = (part.strip() for part in text.partition("="))
    try:
        if not sep:
            raise ValueError("want KEY=VALUE, e.g. raft.wal_max_size_bytes=67108864")
        check_setting(key, value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
    return key, value


@contextmanager
def own_broker(settings: Mapping[str, str]) -> Iterator[OwnBroker]:
    """A started private node with ``settings`` in its ``rabbitmq.conf``; gone afterwards.

    Raises:
        RuntimeError: the node did not start (RabbitMQ refuses unknown keys and bad
            values at boot; the error carries its log's tail).
    """
    with own_node("crmsync-bench-intake", settings=settings) as (cluster, node):
        keys = ", ".join(RA_KEYS)
        out = cluster.ctl(node, "eval", f"maps:with([{keys}], ra_system:fetch(quorum_queues)).")
        yield OwnBroker(
            node=node.name,
            amqp_url=node.url,
            beam_pid=node.beam_pid(),
            wal_dir=node.wal_dir,
            settings=dict(settings),
            ra=dict(re.findall(r"(\w+) => ([^,}\s]+)", out)),
        )


def report_line(broker: dict[str, Any]) -> str:
    """The report's line on the broker: whose it is and which settings were changed."""
    if not broker.get("own"):
        return f"broker: {broker['address']} (the machine's; --own-broker for a private one)"
    changed = ", ".join(f"{k} = {v}" for k, v in broker["settings"].items()) or "none"
    ra = ", ".join(f"{k} {v}" for k, v in broker["ra"].items())
    return f"broker: own node {broker['node']}; settings changed: {changed}; it reports {ra}"
