"""Clear, credential-free errors: wrong password, missing database, unreachable server, old tools."""

from __future__ import annotations

import subprocess
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


@pytest.fixture
def tiny_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs (needs root; skipped elsewhere)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_disk_full_is_named_and_leaves_no_partial_files(
    database: tuple[PostgresServer, str], tmp_path: Path, tiny_disk: Path
) -> None:
    server, dbname = database
    server.psql("CREATE TABLE noise AS SELECT md5(g::text) || md5((g * 3)::text) AS v "
                "FROM generate_series(1, 100000) g", dbname)
    run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tiny_disk), "--compression", "none"],
                    runner_env(server), tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "DiskFull"
    assert "disk full" in run.result["message"]
    assert [p for p in tiny_disk.rglob("*") if p.is_file()] == []


def test_delete_backup_removes_the_manifest_and_dump_and_is_idempotent(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, dbname = database
    server.psql("CREATE TABLE t AS SELECT 1 AS x", dbname)
    env = runner_env(server)
    assert run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", "b"],
                     env, tmp_path).code == 0
    folder = tmp_path / "s" / "local" / dbname / "b"
    (tmp_path / "s" / "local" / dbname / "other.txt").write_text("not ours")
    first = run_dbops(["delete-backup", "--from", str(folder / "manifest.json")], env, tmp_path)
    assert first.code == 0 and first.result["deletedObjects"] == 2
    assert not folder.exists()
    assert (tmp_path / "s" / "local" / dbname / "other.txt").exists()
    second = run_dbops(["delete-backup", "--from", str(folder)], env, tmp_path)
    assert second.code == 0 and second.result["deletedObjects"] == 0
