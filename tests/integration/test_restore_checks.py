"""``dbops restore --checks-json/--checks-file``: SQL checks with expectations against the restored database."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration import datasets
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer

PASSING = [
    {"name": "user-count", "sql": "SELECT count(*) FROM app.users", "expect": {"equals": "25"}},
    {"name": "no-orphans", "sql": "SELECT b.id FROM app.bookings b LEFT JOIN app.users u ON u.id = b.user_id "
                                  "WHERE u.id IS NULL", "expect": {"rows": 0}},
    {"name": "bookings-range", "sql": "SELECT count(*) FROM app.bookings", "expect": {"min": 50, "max": 50}},
]
FAILING = [
    PASSING[0],
    {"name": "too-many-users", "sql": "SELECT count(*) FROM app.users", "expect": {"max": 10}},
    {"name": "missing-table", "sql": "SELECT * FROM no_such_table", "expect": {"rows": 0}},
]


def _backup(server: PostgresServer, source: str, tmp_path: Path) -> Path:
    datasets.create_dataset(server, source, users=25, bookings=50, events=5)
    run = run_dbops(["backup", "--dbname", source, "--storage", str(tmp_path / "store"), "--name", "b"],
                    runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    return tmp_path / "store" / "local" / source / "b"


def test_restore_checks_pass_and_are_reported(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    folder = _backup(server, source, tmp_path)
    target = f"{source}_ok"
    try:
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--create",
                         "--checks-json", json.dumps(PASSING)], runner_env(server), tmp_path)
        assert run.code == 0, run.stderr
        checks = run.result["verification"]["checks"]
        assert [(c["name"], c["passed"]) for c in checks] == [(c["name"], True) for c in PASSING]
        assert "3 checks passed" in run.result["message"]
    finally:
        server.drop_database(target)


def test_failed_restore_checks_exit_1_with_their_names(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    folder = _backup(server, source, tmp_path)
    target = f"{source}_bad"
    checks_file = tmp_path / "checks.yaml"
    checks_file.write_text(
        "- name: too-many-users\n  sql: SELECT count(*) FROM app.users\n  expect: {max: 10}\n"
        "- name: missing-table\n  sql: SELECT * FROM no_such_table\n  expect: {rows: 0}\n")
    try:
        for source_args in (["--checks-json", json.dumps(FAILING)],
                            ["--checks-json", json.dumps(FAILING[:1]), "--checks-file", str(checks_file)]):
            server.drop_database(target)
            run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--create", *source_args],
                            runner_env(server), tmp_path)
            assert run.code == 1, run.stderr
            assert run.result["reason"] == "VerificationFailed"
            assert "checks failed (too-many-users, missing-table)" in run.result["message"]
            checks = {c["name"]: c for c in run.result["verification"]["checks"]}
            assert checks["user-count"]["passed"] is True
            assert checks["too-many-users"]["passed"] is False
            assert "at most 10" in checks["too-many-users"]["detail"]
            assert "no_such_table" in checks["missing-table"]["detail"]
            assert run.result["verification"]["rowCounts"]["passed"] is True
            # The data is restored all the same: the checks judge it, they do not undo it.
            assert server.psql("SELECT count(*) FROM app.users", target) == "25"
    finally:
        server.drop_database(target)


def test_malformed_checks_are_refused_before_restoring(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    folder = _backup(server, source, tmp_path)
    target = f"{source}_never"
    for checks in ("not json", json.dumps([{"name": "x", "sql": "SELECT 1", "expect": {"between": 1}}]),
                   json.dumps([PASSING[0], PASSING[0]])):
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--create", "--checks-json", checks],
                        runner_env(server), tmp_path)
        assert run.code == 2, run.stderr
        assert run.result["reason"] == "InvalidSpec"
    assert server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
