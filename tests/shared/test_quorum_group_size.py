"""CRMSYNC_QUORUM_INITIAL_GROUP_SIZE: set, or one replica per node of CRMSYNC_AMQP_URL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import CommonSettings

THREE_NODES = "amqp://u:p@rmq-0:5672/,amqp://u:p@rmq-1:5672/,amqp://u:p@rmq-2:5672/"


def test_the_default_is_the_number_of_nodes_in_the_url_list() -> None:
    assert CommonSettings(_env_file=None, amqp_url=THREE_NODES).quorum_group_size() == 3
    assert CommonSettings(_env_file=None, amqp_url="amqp://a/, amqp://b/,").quorum_group_size() == 2
    assert CommonSettings(_env_file=None, amqp_url="amqp://a/").quorum_group_size() == 1


def test_the_setting_wins_and_an_empty_variable_means_the_default(monkeypatch) -> None:
    monkeypatch.setenv("CRMSYNC_AMQP_URL", THREE_NODES)
    monkeypatch.setenv("CRMSYNC_QUORUM_INITIAL_GROUP_SIZE", "5")
    assert CommonSettings(_env_file=None).quorum_group_size() == 5
    monkeypatch.setenv("CRMSYNC_QUORUM_INITIAL_GROUP_SIZE", "")
    assert CommonSettings(_env_file=None).quorum_group_size() == 3


def test_a_group_size_below_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="quorum_initial_group_size"):
        CommonSettings(_env_file=None, quorum_initial_group_size=0)
