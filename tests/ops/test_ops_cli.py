"""``crmsync dead-letters`` / ``actions`` refuse incomplete commands and ask before a purge."""

from __future__ import annotations

from click.testing import CliRunner

from services.cli import main


def test_a_purge_asks_first_and_no_changes_nothing() -> None:
    result = CliRunner().invoke(
        main, ["dead-letters", "purge", "syncer.orders.dead", "--id", "evt-1"], input="n\n"
    )
    assert result.exit_code == 1 and "drop 1 message(s)" in result.output
    assert "Aborted" in result.output


def test_replay_and_retry_need_ids_or_all() -> None:
    runner = CliRunner()
    replay = runner.invoke(main, ["dead-letters", "replay", "syncer.orders.dead"])
    assert replay.exit_code == 2 and "--id ID" in replay.output
    retry = runner.invoke(main, ["actions", "retry"])
    assert retry.exit_code == 2 and "--all-failed" in retry.output
