"""The ``autosteer`` command line: every command is mounted (the testbed's too), each
answers ``--help``, and autosteer errors are CLI errors, not tracebacks."""

from __future__ import annotations

import pytest
from autosteer.streams.cli import main
from click.testing import CliRunner

COMMANDS = {"infra": {"up", "down", "status"}, "models": {"prepare"}, "worker": set(),
            "camera": {"add", "remove"}, "sql": set(), "report": set(),
            "topics": {"create", "schemas"}, "plan": set(), "deploy": set(), "demo": set(),
            "testbed": None}


def test_every_command_is_mounted() -> None:
    assert set(main.commands) == set(COMMANDS)
    for name, subs in COMMANDS.items():
        if subs:
            assert set(main.commands[name].commands) == subs, name  # type: ignore[attr-defined]


@pytest.mark.parametrize("argv", [[name, *([sub] if sub else [])] for name, subs in
                                  COMMANDS.items() for sub in (sorted(subs or ()) or [None])])
def test_each_command_answers_help(argv: list[str]) -> None:
    res = CliRunner().invoke(main, [*argv, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_a_bad_setting_and_an_unknown_view_are_cli_errors(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("AUTOSTEER_PARTITIONS", "many")
    res = CliRunner().invoke(main, ["sql", "--view", "list"])
    assert res.exit_code == 1 and "invalid AUTOSTEER_* setting" in res.output
    monkeypatch.delenv("AUTOSTEER_PARTITIONS")
    res = CliRunner().invoke(main, ["sql", "--view", "offload_ratio_per_minute"])
    assert res.exit_code == 1
    assert "no view 'offload_ratio_per_minute'; choose from" in res.output
    assert "cloud_share_per_minute" in res.output
    res = CliRunner().invoke(main, ["sql"])
    assert res.exit_code == 2 and "give a QUERY or --view NAME" in res.output
