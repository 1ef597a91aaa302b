"""Command mode: a real Django project's migrations run by `dbops migrate apply --command`, with
pre-checks before and verification after."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
from tests.integration.migrate_support import run_dbops, table_exists

from dbops_testbed.postgres import PostgresServer

MANAGE = Path(__file__).parent / "django_app" / "manage.py"
DJANGO_MIGRATE = ["--command", "--", sys.executable, str(MANAGE), "migrate", "--noinput"]


def test_django_migrations_run_with_prechecks_and_verification(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", *DJANGO_MIGRATE)
    assert code == 0, (doc, stderr)
    assert {c["name"] for c in doc["preChecks"]} >= {"connectivity", "privileges", "blockingTransactions"}
    assert {v["name"] for v in doc["verification"]} >= {"foreignKeys", "invalidIndexes", "rowCounts"}
    assert all(v["passed"] for v in doc["verification"])
    assert table_exists(server, db, "mentorship_booking")
    assert server.psql("SELECT string_agg(name, ',' ORDER BY id) FROM django_migrations"
                       " WHERE app = 'mentorship'", db) == "0001_initial,0002_booking_status"
    assert server.psql("SELECT count(*) FROM pg_indexes WHERE tablename = 'mentorship_booking'"
                       " AND indexdef LIKE '%(status)%'", db) == "1"
    code, doc, _ = run_dbops(server, db, "migrate", "apply", *DJANGO_MIGRATE)
    assert code == 0, doc


def test_failing_prechecks_keep_the_command_from_running(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql("CREATE TABLE busy (id int)", db)
    with psycopg.connect(server.uri(db), sslmode="disable") as blocker:
        blocker.execute("LOCK TABLE busy IN SHARE MODE")
        code, doc, _ = run_dbops(server, db, "migrate", "apply", "--max-blocking-transaction-seconds", "0",
                                 *DJANGO_MIGRATE)
    assert code == 1 and doc["reason"] == "PreChecksFailed"
    assert not table_exists(server, db, "django_migrations")


def test_a_failing_command_and_a_failed_verification_are_reported(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--command", "--", sys.executable, str(MANAGE),
                             "migrate", "no_such_app", "--noinput")
    assert code == 2 and doc["reason"] == "MigrationFailed"
    assert "exited with code 1" in doc["message"]
    checks = tmp_path / "checks.json"
    checks.write_text('[{"name": "has-mentors", "sql": "SELECT count(*) FROM mentorship_mentor",'
                      ' "expect": {"min": 1}}]')
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--checks-file", str(checks), *DJANGO_MIGRATE)
    assert code == 1 and doc["reason"] == "VerificationFailed"
    assert {v["name"]: v["passed"] for v in doc["verification"]}["has-mentors"] is False
    assert table_exists(server, db, "mentorship_mentor")


def test_command_mode_refuses_options_it_cannot_honour(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--dry-run", *DJANGO_MIGRATE)
    assert code == 2 and doc["reason"] == "InvalidSpec" and "--dry-run" in doc["message"]
    assert not table_exists(server, db, "django_migrations")
