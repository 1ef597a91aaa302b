"""TLS connections (PostgreSQL 15 runs with ssl=on): pg_dump with TLS works, tools without TLS fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.runner_cli import DEBIAN_15_BIN, run_dbops, runner_env, tools_path

from dbops_testbed.postgres import PostgresServer


@pytest.fixture
def tls_database(database: tuple[PostgresServer, str]) -> tuple[PostgresServer, str]:
    server, dbname = database
    if server.major != 15:
        pytest.skip("only the Debian PostgreSQL 15 server has TLS enabled")
    server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g", dbname)
    return server, dbname


def test_backup_and_restore_over_tls(tls_database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, dbname = tls_database
    env = runner_env(server, PGSSLMODE="require", DBOPS_PG_BIN_DIR=DEBIAN_15_BIN)
    backup = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", "b"], env, tmp_path)
    assert backup.code == 0, backup.stderr
    restore = run_dbops(["restore", "--from", str(tmp_path / "s" / "local" / dbname / "b"), "--dbname",
                         f"{dbname}_tls", "--create", "--sslmode", "require"], env, tmp_path)
    try:
        assert restore.code == 0, restore.stderr
        assert server.psql("SELECT count(*) FROM t", f"{dbname}_tls") == "10"
    finally:
        server.drop_database(f"{dbname}_tls")


def test_tools_without_tls_support_fail_with_a_clear_message(
    tls_database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, dbname = tls_database
    env = runner_env(server, PGSSLMODE="require", DBOPS_PG_BIN_DIR=tools_path(newest_only=True))
    run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s")], env, tmp_path)
    assert run.code == 2, run.stderr
    assert run.result["reason"] == "Unsupported"
    assert "SSL" in run.result["message"]
    assert not list((tmp_path / "s").rglob("manifest.json")) if (tmp_path / "s").exists() else True
