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
    # what a DatabaseMigration verifies by default: rowCounts is opt-in (issue 11, defect 2)
    assert {v["name"] for v in doc["verification"]} == {"foreignKeys", "invalidIndexes"}  # orphans: in foreignKeys
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


def test_incremental_django_migrate_and_rollback_to_zero_succeed(database: tuple[PostgresServer, str]) -> None:
    """Row counts leave out Django's bookkeeping (django_migrations, content types, permissions), so a correct
    incremental `migrate` and `migrate <app> zero` pass; the result records which Django migrations ran."""
    server, db = database
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", *DJANGO_MIGRATE)
    assert code == 0, (doc, stderr)
    assert "mentorship.0002_booking_status" in doc["frameworkHistory"]["added"]
    server.psql("INSERT INTO mentorship_mentor (bio, rating, is_approved) VALUES ('ada', 4.5, true), "
                "('grace', 5, true)", db)
    back = [*DJANGO_MIGRATE[:4], "migrate", "mentorship", "0001", "--noinput"]
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", *back)
    assert code == 0, (doc, stderr)
    assert doc["frameworkHistory"] == {"framework": "django", "added": [],
                                       "removed": ["mentorship.0002_booking_status"]}
    permissions = server.psql("SELECT count(*) FROM auth_permission", db)
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", "--verify", *DJANGO_MIGRATE)  # all builtins
    assert code == 0, (doc, stderr)
    assert doc["frameworkHistory"] == {"framework": "django", "added": ["mentorship.0002_booking_status"],
                                       "removed": []}
    assert "django: 1 applied, 0 unapplied" in doc["message"]
    row_counts = {v["name"]: v for v in doc["verification"]}["rowCounts"]
    assert row_counts["passed"] and "public.mentorship_mentor" not in row_counts["detail"]
    assert server.psql("SELECT count(*) FROM auth_permission", db) == permissions
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", *DJANGO_MIGRATE[:4], "migrate", "mentorship",
                                  "zero", "--noinput")
    assert code == 0, (doc, stderr)
    assert doc["ok"] is True and doc["reason"] == "Succeeded"
    assert sorted(doc["frameworkHistory"]["removed"]) == ["mentorship.0001_initial",
                                                         "mentorship.0002_booking_status"]
    assert not table_exists(server, db, "mentorship_mentor")
    assert server.psql("SELECT count(*) FROM django_migrations WHERE app = 'mentorship'", db) == "0"


def test_row_counts_of_listed_tables_only(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    first = [*DJANGO_MIGRATE[:4], "migrate", "mentorship", "0001", "--noinput"]
    assert run_dbops(server, db, "migrate", "apply", *first)[0] == 0
    server.psql("CREATE TABLE app_cache (k text); INSERT INTO mentorship_mentor (bio, rating, is_approved) VALUES ('ada', 4, true)", db)
    # a trigger-like side effect the user accepts: a cache table filled by the migration command
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--row-count-tables", "mentorship_mentor",
                             "--command", "--", "sh", "-c",
                             f"psql \"$DBOPS_DATABASE_URI\" -qc \"INSERT INTO app_cache VALUES ('x')\" && "
                             f"{sys.executable} {MANAGE} migrate --noinput")
    assert code == 0, doc
    detail = {v["name"]: v for v in doc["verification"]}["rowCounts"]["detail"]
    assert detail.startswith("1 tables compared")
