"""``dbops verify --restore-test``: a scratch restore, row counts against the manifest, SQL checks."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration import datasets
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer


def _scratch_databases(server: PostgresServer) -> str:
    return server.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'dbops_verify_%'")


def test_restore_test_passes_checks_and_drops_the_scratch_database(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=60, bookings=240, events=30)
    env = runner_env(server)
    assert run_dbops(["backup", "--dbname", source, "--storage", str(tmp_path / "s"), "--name", "b"],
                     env, tmp_path).code == 0
    folder = str(tmp_path / "s" / "local" / source / "b")
    good = run_dbops(["verify", "--from", folder, "--restore-test", "--dbname", "postgres",
                      "--check-sql", "SELECT count(*) = 60 FROM app.users",
                      "--check-sql", "SELECT b.id FROM app.bookings b LEFT JOIN app.users u ON u.id = b.user_id "
                                     "WHERE u.id IS NULL"], env, tmp_path)
    assert good.code == 0, good.stderr
    test = good.result["verification"]["restoreTest"]
    assert test == {"passed": True, "tablesCompared": len(datasets.TABLES), "mismatches": []}
    assert [c["passed"] for c in good.result["verification"]["checks"]] == [True, True]

    bad = run_dbops(["verify", "--from", folder, "--restore-test",
                     "--check-sql", "SELECT count(*) = 61 FROM app.users",
                     "--check-sql", "SELECT * FROM no_such_table"], env, tmp_path)
    assert bad.code == 1
    assert bad.result["reason"] == "VerificationFailed"
    assert [c["passed"] for c in bad.result["verification"]["checks"]] == [False, False]
    assert "no_such_table" in bad.result["verification"]["checks"][1]["detail"]
    assert _scratch_databases(server) == ""


def test_restore_test_checks_with_expectations(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=40, bookings=120, events=10)
    env = runner_env(server)
    assert run_dbops(["backup", "--dbname", source, "--storage", str(tmp_path / "s"), "--name", "b"],
                     env, tmp_path).code == 0
    folder = str(tmp_path / "s" / "local" / source / "b")
    users = {"name": "users", "sql": "SELECT count(*) FROM app.users", "expect": {"equals": "40"}}
    orphans = {"name": "orphans", "sql": "SELECT b.id FROM app.bookings b LEFT JOIN app.users u "
                                         "ON u.id = b.user_id WHERE u.id IS NULL", "expect": {"rows": 0}}
    good = run_dbops(["verify", "--from", folder, "--restore-test", "--checks-json", json.dumps([users, orphans]),
                      "--check-sql", "SELECT true"], env, tmp_path)
    assert good.code == 0, good.stderr
    checks = good.result["verification"]["checks"]
    assert [(c.get("name"), c["passed"]) for c in checks] == [("users", True), ("orphans", True), (None, True)]
    assert "3 checks passed" in good.result["message"]

    writes = {"name": "no-writes", "sql": "CREATE TABLE app.sneaky (id int)", "expect": {"rows": 0}}
    too_few = {"name": "min-bookings", "sql": "SELECT count(*) FROM app.bookings", "expect": {"min": 1000}}
    bad = run_dbops(["verify", "--from", folder, "--restore-test", "--checks-json",
                     json.dumps([users, too_few, writes])], env, tmp_path)
    assert bad.code == 1
    assert bad.result["reason"] == "VerificationFailed"
    results = {c["name"]: c for c in bad.result["verification"]["checks"]}
    assert results["users"]["passed"] is True
    assert results["min-bookings"]["passed"] is False and "at least 1000" in results["min-bookings"]["detail"]
    assert results["no-writes"]["passed"] is False and "read-only" in results["no-writes"]["detail"]
    assert "check min-bookings failed" in bad.result["message"] and "check no-writes failed" in bad.result["message"]
    assert bad.result["verification"]["restoreTest"]["passed"] is True
    assert _scratch_databases(server) == ""

    refused = run_dbops(["verify", "--from", folder, "--checks-json", json.dumps([users])], env, tmp_path)
    assert refused.code == 2 and "--restore-test" in refused.result["message"]
