"""Clear, credential-free errors: wrong password, missing database, unreachable server, old tools."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.ports import free_port
from dbops_testbed.postgres import PostgresServer

CANARY = "Canary-pw-7f3a9c"


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "failed" in line or "error" in line.lower()]


def test_wrong_password_is_one_clear_line_without_the_password(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, dbname = database
    env = runner_env(server, PGPASSWORD=CANARY)
    run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s")], env, tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "AuthenticationFailed"
    lines = _error_lines(run.stderr)
    assert len(lines) == 1 and "password authentication failed" in lines[0]
    assert CANARY not in run.output
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("manifest.json"))


def test_password_in_a_database_uri_never_appears(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, dbname = database
    env = runner_env(None, DBOPS_DATABASE_URI=server.uri(dbname, password=CANARY))
    for args in (["backup", "--storage", str(tmp_path / "s")],
                 ["restore", "--from", str(tmp_path / "nothing")],
                 ["verify", "--from", str(tmp_path / "nothing"), "--restore-test"]):
        run = run_dbops(args, env, tmp_path)
        assert run.code == 2, run.stderr
        assert CANARY not in run.output


def test_missing_database_is_named(pg_server: PostgresServer, tmp_path: Path) -> None:
    run = run_dbops(["backup", "--dbname", "no_such_db", "--storage", str(tmp_path / "s")],
                    runner_env(pg_server), tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "NotFound"
    lines = _error_lines(run.stderr)
    assert len(lines) == 1 and 'database "no_such_db" does not exist' in lines[0]
    assert pg_server.password not in run.output


def test_unreachable_server_is_a_transient_error(tmp_path: Path) -> None:
    env = runner_env(None, PGHOST="127.0.0.1", PGPORT=str(free_port()), PGUSER="postgres", PGPASSWORD=CANARY)
    run = run_dbops(["backup", "--dbname", "x", "--storage", str(tmp_path / "s")], env, tmp_path)
    assert run.code == 3
    assert "cannot reach PostgreSQL" in run.result["message"]
    assert CANARY not in run.output


def test_tools_older_than_the_server_are_refused(pg_server: PostgresServer, tmp_path: Path) -> None:
    if pg_server.major <= 15:
        pytest.skip("Debian's tools are as new as this server")
    env = runner_env(pg_server, DBOPS_PG_BIN_DIR="/usr/lib/postgresql/15/bin")
    run = run_dbops(["backup", "--dbname", "postgres", "--storage", str(tmp_path / "s")], env, tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "Unsupported"
    assert "no pg_dump of major version 18" in run.result["message"]
