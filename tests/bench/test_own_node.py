"""bench/_rabbit_cluster.py's own_node: a private RabbitMQ node with rabbitmq.conf
settings of the caller's (what ``bench/intake.py --own-broker`` runs on), on free
ports with its own name, cookie and data; the system node is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._rabbit_cluster import LocalCluster, check_setting, own_node
from tests.rabbit_node import needs_rabbitmq_server

WAL_64_MIB = str(64 * 2**20)


@needs_rabbitmq_server
@pytest.mark.timeout(180)
def test_the_node_runs_with_the_settings_given_and_is_gone_afterwards() -> None:
    with own_node("crmsync-test-own", settings={"raft.wal_max_size_bytes": WAL_64_MIB}) as (
        cluster,
        node,
    ):
        ra = cluster.ctl(
            node, "eval", "maps:get(wal_max_size_bytes, ra_system:fetch(quorum_queues))."
        )
        pid = node.beam_pid()
        assert pid is not None
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        wal_files = [p.name for p in node.wal_dir.glob("*.wal")]
        folder = cluster.tmp

    assert ra.strip() == WAL_64_MIB
    assert comm == "beam.smp"
    assert wal_files == ["00000001.wal"]
    assert not folder.exists()
    assert not Path(f"/proc/{pid}").exists()


@needs_rabbitmq_server
@pytest.mark.timeout(180)
def test_a_setting_rabbitmq_does_not_know_stops_the_start_with_its_complaint() -> None:
    with (
        pytest.raises(RuntimeError, match=r"unknown variable: raft\.no_such_setting"),
        own_node("crmsync-test-own", settings={"raft.no_such_setting": "1"}),
    ):
        pass


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("raft.wal_max_size_bytes", "1\nlisteners.tcp.2 = 0.0.0.0:5672"),
        ("raft.wal_max_size_bytes", " "),
        ("raft wal", "1"),
        ("", "1"),
    ],
)
def test_a_setting_that_is_not_one_conf_line_is_refused_before_anything_starts(
    tmp_path: Path, key: str, value: str
) -> None:
    with pytest.raises(ValueError):
        check_setting(key, value)
    with pytest.raises(ValueError):
        LocalCluster(tmp_path, size=1, settings={key: value})
