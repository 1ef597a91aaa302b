"""`dbops check` against real PostgreSQL 15 and 18: pass, blocking transactions, connections, privileges."""

from __future__ import annotations

import uuid

import psycopg
from tests.integration.migrate_support import run_dbops

from dbops_testbed.postgres import PostgresServer


def by_name(doc: dict[str, object]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in doc["preChecks"]}  # type: ignore[index, union-attr, attr-defined]


def test_checks_pass_on_an_idle_database(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    code, doc, _ = run_dbops(server, db, "check")
    assert code == 0, doc
    checks = by_name(doc)
    assert set(checks) == {"connectivity", "privileges", "activeConnections", "blockingTransactions", "databaseSize"}
    assert all(c["result"] == "pass" for c in checks.values())
    assert f"PostgreSQL {server.major}" in checks["connectivity"]["detail"]
    assert "bytes" in checks["databaseSize"]["detail"]


def test_a_transaction_holding_locks_fails_the_check(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql("CREATE TABLE busy (id int)", db)
    with psycopg.connect(server.uri(db), sslmode="disable") as blocker:
        blocker.execute("SELECT * FROM busy")  # holds ACCESS SHARE on busy until commit
        code, doc, _ = run_dbops(server, db, "check", "--max-blocking-transaction-seconds", "0")
        pid = blocker.info.backend_pid
    assert code == 1 and doc["reason"] == "PreChecksFailed"
    blocking = by_name(doc)["blockingTransactions"]
    assert blocking["result"] == "fail" and f"pid {pid}" in blocking["detail"]
    code, doc, _ = run_dbops(server, db, "check", "--max-blocking-transaction-seconds", "0")
    assert code == 0, doc


def test_too_many_connections_fail_or_warn(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    connections = [psycopg.connect(server.uri(db), sslmode="disable") for _ in range(3)]
    try:
        code, doc, _ = run_dbops(server, db, "check", "--max-active-connections", "2")
        assert code == 1 and by_name(doc)["activeConnections"]["result"] == "fail"
        code, doc, _ = run_dbops(server, db, "check", "--max-active-connections", "3")
        assert code == 0 and by_name(doc)["activeConnections"]["result"] == "warn"
        code, doc, _ = run_dbops(server, db, "check", "--max-active-connections", "3", "--fail-on", "warn")
        assert code == 1
    finally:
        for connection in connections:
            connection.close()


def test_missing_create_privilege_fails(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    role = f"r_{uuid.uuid4().hex[:8]}"
    server.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'", db)
    try:
        server.psql(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {role}", db)
        env = {"DBOPS_DATABASE_URI": server.uri(db, user=role, password=f"pw-{role}")}
        code, doc, stderr = run_dbops(server, db, "check", env=env)
        assert code == 1
        assert by_name(doc)["privileges"]["result"] == "fail"
        assert f"pw-{role}" not in stderr + str(doc)
        env = {"DBOPS_DATABASE_URI": server.uri(db, user=role, password="wrong")}
        code, doc, _ = run_dbops(server, db, "check", env=env)
        assert code == 2 and doc["reason"] == "AuthenticationFailed"
        assert by_name(doc)["connectivity"]["result"] == "fail"
        env = {"DBOPS_DATABASE_URI": server.uri("no_such_db")}
        code, doc, _ = run_dbops(server, db, "check", env=env)
        assert code == 2 and doc["reason"] == "NotFound"
        assert server.password not in str(doc)
    finally:
        server.psql(f"DROP OWNED BY {role}; DROP ROLE {role}", db)
