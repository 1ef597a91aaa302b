"""The dbops command line: every subcommand is registered where the table says."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbops.cli import main


def test_every_registered_subcommand_is_in_the_table() -> None:
    parser = main.build_parser(load_all=True)
    registered = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert registered == set(main.COMMAND_MODULES)


def test_the_help_listing_matches_the_modules_and_imports_none_of_them() -> None:
    loaded = main.build_parser(load_all=True)._subparsers._group_actions[0]  # type: ignore[union-attr]
    assert {a.dest: a.help for a in loaded._choices_actions} == main.COMMAND_HELP  # type: ignore[attr-defined]
    code = ("import sys; from dbops.cli import main\n"
            "try:\n    main.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('dbops.') and m != 'dbops.cli.main'"
            " and not m.startswith('dbops.errors')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "['dbops.cli']"
    assert "verify-db" in completed.stdout


@pytest.mark.parametrize("command", sorted(main.COMMAND_MODULES))
def test_each_subcommand_parses_alone(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"dbops {command}" in capsys.readouterr().out


def test_migrate_imports_neither_the_api_models_nor_the_backup_pipeline() -> None:
    """P6: ``dbops migrate apply`` starts without pydantic, boto3, the restore code (≈ 0.15 s of importing) or
    yaml (≈ 10 ms; only inline migration files and checks files need it), nor the modules only other modes use
    (pre-checks, query plans, command mode) or the apply path, imported while squawk runs."""
    code = ("import sys; from dbops.cli import main\n"
            "try:\n    main.main(['migrate', 'apply', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'boto3', 'kopf')"
            " or m in ('yaml', 'dbops.runner.restore', 'dbops.runner.manifest', 'dbops.runner.migrations.rehearsal',"
            " 'dbops.runner.prechecks', 'dbops.runner.query_plans', 'dbops.runner.migrations.command',"
            " 'dbops.runner.migrations.apply')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_the_rehearse_help_names_the_scratch_prefix_rehearsal_uses() -> None:
    from dbops.cli import migrate_rehearse
    from dbops.runner.migrations import rehearsal

    assert migrate_rehearse.SCRATCH_PREFIX == rehearsal.SCRATCH_PREFIX


NOT_RUNNERS = {"crds", "api-reference", "manifests", "operator"}  # they write files or run the operator: no Job result


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                                     argparse.ArgumentParser]]:
    """Every command that runs (a parser without subcommands), with its words."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return [(path, parser)]
    return [leaf for name, child in actions[0].choices.items() for leaf in _leaves(child, (*path, name))]


def test_every_runner_command_takes_result_path() -> None:
    """The Job result protocol: each runner command writes its result where --result-path says."""
    leaves = [(words, p) for words, p in _leaves(main.build_parser(load_all=True)) if words[0] not in NOT_RUNNERS]
    assert {" ".join(words) for words, _ in leaves} >= {"migrate plan", "migrate apply", "check", "verify-db",
                                                        "backup", "restore", "verify", "trigger backup"}
    missing = [" ".join(words) for words, p in leaves
               if "--result-path" not in {o for a in p._actions for o in a.option_strings}]
    assert missing == [], missing


def test_a_migrate_command_ends_without_teardown_and_keeps_its_output_and_exit_code(tmp_path: Path) -> None:
    """P6: ``dbops migrate …`` ends with ``os._exit`` after flushing; stdout (a pipe), stderr, the result file and
    the exit code are all there, as after a normal exit."""
    result_path = tmp_path / "result.json"
    env = {**os.environ, "DBOPS_RESULT_PATH": str(result_path), "DBOPS_DATABASE_URI": "postgresql://nobody@localhost/x"}
    completed = subprocess.run([sys.executable, "-m", "dbops.cli.main", "migrate", "apply", "--source",
                                str(tmp_path / "missing")], capture_output=True, text=True, env=env, check=False)
    document = json.loads(completed.stdout)
    assert completed.returncode == document["exitCode"] == 2, completed
    assert "missing" in document["message"] and document["ok"] is False
    assert json.loads(result_path.read_text()) == document
    assert "dbops migrate apply failed" in completed.stderr
    assert "migrate" in main.QUICK_EXIT_COMMANDS
