"""The dbops command line: every subcommand is registered where the table says."""

from __future__ import annotations

import pytest

from dbops.cli import main


def test_every_registered_subcommand_is_in_the_table() -> None:
    parser = main.build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert registered == set(main.COMMAND_MODULES)


@pytest.mark.parametrize("command", sorted(main.COMMAND_MODULES))
def test_each_subcommand_parses_alone(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"dbops {command}" in capsys.readouterr().out
