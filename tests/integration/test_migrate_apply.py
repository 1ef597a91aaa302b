"""`dbops migrate` against real PostgreSQL 15 and 18: apply, failures, drift, baseline, no-transaction,
lock timeouts, dry run and down migrations."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from tests.integration.migrate_support import (
    history_rows,
    run_dbops,
    schema_dump,
    table_exists,
    write_migrations,
)

from dbops_testbed.postgres import PostgresServer

USERS = ("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);", "DROP TABLE users;")
POSTS = (
    "CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\n"
    "CREATE INDEX posts_user_id ON posts (user_id);",
    "DROP TABLE posts;",
)
TAGS = ("CREATE TABLE tags (id int PRIMARY KEY, label text);", "DROP TABLE tags;")
EMAIL_INDEX = ("ALTER TABLE users ADD COLUMN name text;", "ALTER TABLE users DROP COLUMN name;")


def test_apply_then_status(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS, "0002_create_posts": POSTS})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["0001", "0002"]
    assert doc["previousVersion"] is None and doc["currentVersion"] == "0002"
    assert len(doc["plan"]["hash"]) == 64
    rows = server.psql("SELECT version, name, length(checksum), success, applied_by FROM dbops_migrations"
                       " ORDER BY version", db)
    assert rows.splitlines() == ["0001|create_users|64|t|postgres", "0002|create_posts|64|t|postgres"]
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src))
    assert code == 0
    assert doc["currentVersion"] == "0002" and doc["pending"] == [] and doc["drift"] is None
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0 and doc["applied"] == []


def test_failure_at_statement_k_leaves_no_partial_ddl(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    failing = (
        "CREATE TABLE a (id int);\n"
        "CREATE INDEX a_id ON a (id);\n"
        "ALTER TABLE a ADD COLUMN b int REFERENCES missing_table (id);\n"
        "CREATE TABLE c (id int);"
    )
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS, "0002_breaks": (failing, None)})
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2
    assert doc["reason"] == "MigrationFailed"
    message = doc["message"]
    assert "migration 0002_breaks (up) failed at statement 3 of 4 (line 3)" in message
    assert "ALTER TABLE a ADD COLUMN b int REFERENCES missing_table" in message
    assert 'relation "missing_table" does not exist' in message and "42P01" in message
    assert "0002_breaks" in stderr
    assert table_exists(server, db, "users")
    assert not table_exists(server, db, "a") and not table_exists(server, db, "a_id")
    assert server.psql("SELECT string_agg(version, ',') FROM dbops_migrations", db) == "0001"
    assert doc["currentVersion"] == "0001"


def test_edited_applied_migration_is_refused_before_any_ddl(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src))[0] == 0
    before = history_rows(server, db)
    write_migrations(src, {
        "0001_create_users": ("CREATE TABLE users (id bigint PRIMARY KEY, email text);", USERS[1]),
        "0002_create_tags": TAGS,
    })
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2 and doc["reason"] == "MigrationDrift"
    assert "0001_create_users was edited after it was applied" in doc["message"]
    assert not table_exists(server, db, "tags")
    assert history_rows(server, db) == before
    assert doc["previousVersion"] == "0001" and doc["currentVersion"] == "0001"
    assert "None" not in doc["message"]
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src))
    assert code == 2 and doc["reason"] == "MigrationDrift" and "edited" in doc["drift"]
    assert doc["currentVersion"] == "0001" and "at version 0001" in doc["message"]


def test_non_empty_database_without_history_needs_a_baseline(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    server.psql(USERS[0], db)
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS, "0002_create_tags": TAGS})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2 and doc["reason"] == "BaselineRequired"
    assert not table_exists(server, db, "tags") and not table_exists(server, db, "dbops_migrations")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--baseline-version", "0001")
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["0002"]
    assert server.psql("SELECT version || ':' || kind FROM dbops_migrations ORDER BY version", db).splitlines() == [
        "0001:baseline", "0002:migration"
    ]


def test_concurrent_index_needs_the_no_transaction_directive(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    index = "CREATE INDEX CONCURRENTLY users_email ON users (email);"
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS, "0002_email_index": (index, None)})
    # refused at plan time, before 0001 runs, whatever lint says (it used to fail only when 0002 ran)
    for flags in (["--no-lint"], ["--lint-fail-on", "none"]):
        code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src), *flags)
        assert code == 2 and doc["reason"] == "LintFailed", doc
        assert "0002_email_index" in doc["message"] and "-- dbops:no-transaction" in doc["message"]
        assert doc["plan"]["pending"] == ["0001", "0002"]
        code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), *flags)
        assert code == 2 and doc["reason"] == "LintFailed"
        assert "0002_email_index" in doc["message"] and "-- dbops:no-transaction" in doc["message"]
        assert not table_exists(server, db, "users") and not table_exists(server, db, "users_email")
    write_migrations(src, {"0002_email_index": ("-- dbops:no-transaction\n" + index, None)})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["0001", "0002"]
    assert server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass", db) == "t"


def release_after_two_waiting_attempts(server: PostgresServer, db: str, blocker: psycopg.Connection[Any],
                                       stop: threading.Event) -> None:
    """Commit the blocking transaction once dbops has waited for the lock in two separate attempts."""
    waits, waiting_before = 0, False
    with psycopg.connect(server.uri(db), sslmode="disable", autocommit=True) as observer:
        while not stop.is_set() and waits < 2:
            row = observer.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database() AND a.application_name = 'dbops'"
            ).fetchone()
            waiting = bool(row and row[0])
            waits += waiting and not waiting_before
            waiting_before = waiting
            time.sleep(0.005)
    blocker.commit()


def test_lock_timeout_is_retried_then_succeeds_or_fails_clearly(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src))[0] == 0
    write_migrations(src, {"0002_add_name": EMAIL_INDEX})
    with psycopg.connect(server.uri(db), sslmode="disable") as blocker:
        blocker.execute("LOCK TABLE users IN ACCESS SHARE MODE")  # an open transaction reading users
        code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--lock-timeout", "100ms",
                                 "--lock-retries", "2", "--lock-retry-backoff", "0.1")
        assert code == 3 and doc["reason"] == "LockHeld"
        assert "0002_add_name" in doc["message"] and "gave up after 3 attempts" in doc["message"]
        assert "lock timeout" in doc["message"]
        assert server.psql("SELECT count(*) FROM dbops_migrations", db) == "1"
        stop = threading.Event()
        release = threading.Thread(target=release_after_two_waiting_attempts, args=(server, db, blocker, stop))
        release.start()
        try:
            code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--lock-timeout",
                                     "200ms", "--lock-retries", "20", "--lock-retry-backoff", "0.3")
        finally:
            stop.set()
            release.join()
    assert code == 0, doc
    assert doc["applied"][0]["lockRetries"] >= 1
    assert server.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
                       " AND column_name = 'name'", db) == "1"


def test_dry_run_leaves_the_database_byte_for_byte_unchanged(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--dry-run")
    assert code == 0 and doc["dryRun"] and [a["version"] for a in doc["applied"]] == ["0001"]
    assert not table_exists(server, db, "dbops_migrations") and not table_exists(server, db, "users")
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src))[0] == 0
    write_migrations(src, {"0002_create_posts": POSTS, "0003_create_tags": TAGS,
                           "0004_index": ("-- dbops:no-transaction\nCREATE INDEX CONCURRENTLY t ON tags (id);", None)})
    schema, rows = schema_dump(server, db), history_rows(server, db)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--dry-run")
    assert code == 0, doc
    assert doc["dryRun"] is True
    assert doc["plan"]["pending"] == ["0002", "0003", "0004"]
    assert [a["version"] for a in doc["applied"]] == ["0002", "0003"]
    assert doc["skippedInDryRun"] == ["0004"]
    assert doc["currentVersion"] == "0001"
    assert schema_dump(server, db) == schema
    assert history_rows(server, db) == rows


def test_down_migrations_restore_the_earlier_schema(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    empty = schema_dump(server, db)
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS, "0002_create_posts": POSTS})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src))[0] == 0
    at_0002 = schema_dump(server, db)
    write_migrations(src, {"0003_create_tags": TAGS, "0004_add_name": EMAIL_INDEX})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src))[0] == 0
    assert schema_dump(server, db) != at_0002
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--target-version", "0002")
    assert code == 2 and doc["reason"] == "DownNotAllowed"
    code, doc, _ = run_dbops(server, db, "migrate", "down", "--source", str(src), "--to", "0002")
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["0004", "0003"]
    assert doc["plan"]["destructive"] is True
    assert doc["currentVersion"] == "0002"
    assert schema_dump(server, db) == at_0002
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--target-version", "0",
                             "--allow-down")
    assert code == 0, doc
    server.psql("DROP TABLE dbops_migrations", db)
    assert schema_dump(server, db) == empty


def test_plan_reports_pending_hash_lint_and_destructive(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS,
                                            "0002_drop_email": ("ALTER TABLE users DROP COLUMN email;", None)})
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src))
    assert code == 0, doc
    plan = doc["plan"]
    assert plan["pending"] == ["0001", "0002"]
    assert plan["destructive"] is True
    assert {"version": "0002", "statement": 1, "line": 1, "kind": "drop column"} in plan["destructiveStatements"]
    assert any(f["rule"] == "ban-drop-column" and f["version"] == "0002" for f in plan["lint"])
    code, again, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src))
    assert again["plan"]["hash"] == plan["hash"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--lint-fail-on", "warning")
    assert code == 2 and doc["reason"] == "LintFailed" and "ban-drop-column" in doc["message"]
    assert not table_exists(server, db, "users")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--expect-plan-hash", "0" * 64)
    assert code == 2 and doc["reason"] == "PlanChanged"
    assert not table_exists(server, db, "users")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--expect-plan-hash",
                             plan["hash"])
    assert code == 0, doc


def test_inline_file_source(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    inline = tmp_path / "inline.yaml"
    inline.write_text(
        "- version: '0001'\n  name: create_users\n  up: |\n    CREATE TABLE users (id int);\n"
        "  down: DROP TABLE users;\n"
    )
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--inline-file", str(inline),
                             "--history-table", "ops.history")
    assert code == 0, doc
    assert server.psql("SELECT version FROM ops.history", db) == "0001"
    assert table_exists(server, db, "users")


def test_statement_timeout_applies_per_migration(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_slow": ("CREATE TABLE slow (id int);\nSELECT pg_sleep(30);", None)})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--statement-timeout", "300ms",
                             "--no-lint", env={"DBOPS_APPLIED_BY": "ns/mentorhub-schema"})
    assert code == 2
    assert "0001_slow (up) failed at statement 2 of 2" in doc["message"] and "57014" in doc["message"]
    assert not table_exists(server, db, "slow")
    write_migrations(src, {"0001_slow": ("CREATE TABLE slow (id int);\nSELECT pg_sleep(0.01);", None)})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--statement-timeout", "20s",
                             "--no-lint", env={"DBOPS_APPLIED_BY": "ns/mentorhub-schema"})
    assert code == 0, doc
    assert server.psql("SELECT applied_by FROM dbops_migrations", db) == "ns/mentorhub-schema"


def test_a_failed_no_transaction_migration_is_recorded_as_failed_and_retried(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    broken = ("-- dbops:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);\n"
              "CREATE INDEX CONCURRENTLY users_nope ON users (nope);")
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS, "0002_indexes": (broken, None)})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2
    assert "0002_indexes (up) failed at statement 2 of 2 (line 3)" in doc["message"]
    assert "rolled back" not in doc["message"]
    assert server.psql("SELECT version || ':' || success FROM dbops_migrations ORDER BY version", db).splitlines() == [
        "0001:true", "0002:false"]
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src))
    assert doc["failed"] == ["0002"] and doc["currentVersion"] == "0001" and doc["pending"] == ["0002"]
    fixed = broken.replace("users_nope ON users (nope)", "IF NOT EXISTS users_id_email ON users (id, email)")
    write_migrations(src, {"0002_indexes": (fixed, None)})
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src))
    assert doc["plan"]["retryingFailed"] == ["0002"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert server.psql("SELECT bool_and(success) FROM dbops_migrations", db) == "t"


def test_an_incompatible_history_table_is_a_clear_error(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    server.psql("CREATE TABLE flyway_history (installed_rank int)", db)
    src = write_migrations(tmp_path / "m", {"0001_create_users": USERS})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--history-table",
                             "flyway_history")
    assert code == 2 and doc["reason"] == "MigrationFailed"
    assert "PostgreSQL refused migrating" in doc["message"] and "42703" in doc["message"]
    assert not table_exists(server, db, "users")


def test_a_syntax_error_is_caught_by_lint_or_named_at_its_statement(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_typo": ("CREATE TABLE a (id int);\nCREATE TABLEX b (id int);",
                                                          None)})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2 and doc["reason"] == "LintFailed" and "syntax-error" in doc["message"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 2
    assert "0001_typo (up) failed at statement 2 of 2 (line 2)" in doc["message"] and "42601" in doc["message"]
    assert not table_exists(server, db, "a")
    assert server.psql("SELECT count(*) FROM dbops_migrations", db) == "0"
