"""Consecutive transactional migrations go to PostgreSQL as one pipeline (P6): a failure in the middle keeps the
migrations before it, rolls back the failing one and runs none after it, exactly as one at a time would."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
from tests.integration.migrate_support import run_dbops, table_exists, write_migrations
from tests.integration.test_migrate_apply import release_after_two_waiting_attempts

from dbops_testbed.postgres import PostgresServer


def five(third: str) -> dict[str, tuple[str, str | None]]:
    return {
        "0001_counter": ("CREATE SEQUENCE tickets; CREATE TABLE one (id int);", None),
        "0002_two": ("CREATE TABLE two (id int); INSERT INTO two VALUES (2);", None),
        "0003_three": (third, None),
        "0004_four": ("CREATE TABLE four (n bigint); INSERT INTO four SELECT nextval('tickets');", None),
        "0005_five": ("CREATE TABLE five (id int);", None),
    }


def test_a_failure_inside_the_pipeline_keeps_the_earlier_migrations_and_runs_none_after(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    broken = "CREATE TABLE three (id int);\nINSERT INTO three VALUES ('not a number');\nCREATE TABLE three_b (id int);"
    src = write_migrations(tmp_path / "m", five(broken))

    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")

    assert code == 2, doc
    assert "0003_three" in doc["message"] and "statement 2 of 3 (line 2)" in doc["message"]
    assert "rolled back" in doc["message"]
    assert [a["version"] for a in doc["applied"]] == ["0001", "0002"] and doc["currentVersion"] == "0002"
    assert server.psql("SELECT string_agg(version || ':' || success, ',' ORDER BY version) FROM dbops_migrations",
                       db) == "0001:true,0002:true"
    assert server.psql("SELECT id FROM two", db) == "2"
    for never in ("three", "three_b", "four", "five"):
        assert not table_exists(server, db, never), never
    # 0004 never ran: the sequence it draws from was not advanced.
    assert server.psql("SELECT last_value || ':' || is_called FROM tickets", db) == "1:false"
    assert server.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND state LIKE 'idle in transaction%'", db) == "0"

    write_migrations(src, five("CREATE TABLE three (id int);"))
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["0003", "0004", "0005"]
    assert server.psql("SELECT n FROM four", db) == "1"


def test_a_lock_timeout_inside_the_pipeline_is_retried_from_the_blocked_migration(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    server.psql("CREATE TABLE busy (id int)", db)
    src = write_migrations(tmp_path / "m", five("ALTER TABLE busy ADD COLUMN note text;"))
    with psycopg.connect(server.uri(db), sslmode="disable") as blocker:
        blocker.execute("LOCK TABLE busy IN ACCESS SHARE MODE")  # an open transaction reading the table
        stop = threading.Event()
        release = threading.Thread(target=release_after_two_waiting_attempts, args=(server, db, blocker, stop))
        release.start()
        try:
            code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint",
                                     "--baseline-version", "0", "--lock-timeout", "200ms", "--lock-retries", "20",
                                     "--lock-retry-backoff", "0.3")
        finally:
            stop.set()
            release.join()

    assert code == 0, doc
    applied = {a["version"]: a for a in doc["applied"]}
    assert list(applied) == ["0001", "0002", "0003", "0004", "0005"]
    assert applied["0003"].get("lockRetries", 0) >= 1
    assert not any(applied[v].get("lockRetries") for v in ("0001", "0002", "0004", "0005"))
    assert server.psql("SELECT count(*) FROM dbops_migrations WHERE success AND kind = 'migration'", db) == "5"
    assert server.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy'"
                       " AND column_name = 'note'", db) == "1"
    # Each migration ran exactly once, the blocked one included.
    assert server.psql("SELECT n FROM four", db) == "1" and server.psql("SELECT id FROM two", db) == "2"
