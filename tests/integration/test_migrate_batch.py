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


def test_every_migration_of_a_batch_runs_under_the_timeouts_and_the_session_gets_its_own_back(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    """The timeouts are set for the session around a batch (one statement per migration fewer, P6): each
    migration, its history row included, still runs under them, and afterwards, after a failure too, the
    session has its own settings again (here from PGOPTIONS; what the verification and the no-transaction
    steps start from)."""
    from dbops.runner.migrations import batch, history, plan, source

    server, db = database
    seen = "CREATE TABLE seen_{n} AS SELECT current_setting('lock_timeout') AS lock, " \
           "current_setting('statement_timeout') AS statement"
    ms = [source.make_migration(f"{n:04d}", f"m{n}", seen.format(n=n) + ";", None) for n in range(1, 4)]
    broken = source.make_migration("0004", "m4", seen.format(n=4) + "; SELECT 1/0;", None)
    table = history.HistoryTable.parse(history.DEFAULT_TABLE)
    with psycopg.connect(server.uri(db), sslmode="disable", autocommit=True,
                         options="-c lock_timeout=7s") as connection:
        table.ensure(connection)
        outcome = batch.run(connection, plan.build_plan(ms, [], history_table=str(table)).steps, table,
                            "250ms", "3s")
        assert outcome.error is None and len(outcome.durations_ms) == 3, outcome
        assert connection.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                                  ).fetchone() == ("7s", "0")
        failed = batch.run(connection, plan.build_plan([*ms, broken], table.rows(connection),
                                                       history_table=str(table)).steps, table, "250ms", "3s")
        assert failed.failed_step == 0 and isinstance(failed.error, psycopg.errors.DivisionByZero), failed
        assert connection.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                                  ).fetchone() == ("7s", "0")
    for n in range(1, 4):
        assert server.psql(f"SELECT lock || ',' || statement FROM seen_{n}", db) == "250ms,3s", n
    assert not table_exists(server, db, "seen_4")
    assert server.psql("SELECT string_agg(version, ',' ORDER BY version) FROM dbops_migrations", db) == \
        "0001,0002,0003"
