"""A no-transaction migration that leaves broken objects (an INVALID index after a lock timeout or a killed
runner, a constraint still NOT VALID) is never recorded as applied, and a re-run rebuilds what it left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from tests.integration.migrate_support import run_dbops, start_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

USERS = ("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n"
         "INSERT INTO users SELECT g, 'u' || g || '@example.org' FROM generate_series(1, 2000) g;", None)
INDEX = ("-- dbops:no-transaction\n"
         "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);\n", None)


def index_state(server: PostgresServer, db: str, name: str) -> str:
    """'valid', 'INVALID' or 'missing'."""
    state = server.psql(f"SELECT CASE WHEN indisvalid THEN 'valid' ELSE 'INVALID' END FROM pg_index"
                        f" WHERE indexrelid = to_regclass('{name}')", db)
    return state or "missing"


def history(server: PostgresServer, db: str) -> list[str]:
    return server.psql("SELECT version || ':' || success FROM dbops_migrations ORDER BY version", db).splitlines()


def wait_for(condition: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@contextlib.contextmanager
def writer_blocking_the_build(server: PostgresServer, db: str, tmp_path: Path,
                              index: tuple[str, None]) -> Iterator[tuple[Path, psycopg.Connection[Any]]]:
    """0001 (users) applied and 0002 (a concurrent index build) written; for the block, an open transaction that
    wrote to users, which a concurrent index build waits for after committing its INVALID entry. Yields the
    migrations folder and the writer's connection; the writer commits when the block ends (if it has not)."""
    src = write_migrations(tmp_path / "m", {"0001_users": USERS})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src))[0] == 0
    write_migrations(src, {"0002_email_index": index})
    with psycopg.connect(server.uri(db), sslmode="disable") as blocker:
        blocker.execute("INSERT INTO users VALUES (100000, 'late@example.org')")
        yield src, blocker
        blocker.commit()


def kill_the_runner_mid_build(server: PostgresServer, db: str, tmp_path: Path, src: Path,
                              building: Callable[[], bool]) -> None:
    """Start ``migrate apply``, SIGKILL it once ``building`` is true, and wait until the server noticed the
    vanished client (client_connection_check_interval) and aborted the build."""
    runner = start_dbops(server, db, tmp_path / "killed.json", "migrate", "apply", "--source", str(src),
                         "--lock-timeout", "60s")
    try:
        wait_for(building)
        os.kill(runner.pid, signal.SIGKILL)
        runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    wait_for(lambda: server.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbops'"
                                 " AND datname = current_database()", db) == "0")


def test_concurrent_index_hitting_lock_timeout_is_not_recorded_and_rebuilt_on_retry(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    # An open transaction that wrote to users: CREATE INDEX CONCURRENTLY commits the (invalid) index entry,
    # then waits for this writer, hits lock_timeout and leaves the INVALID index behind; the IF NOT EXISTS
    # retry used to skip it and record 0002 as applied.
    with writer_blocking_the_build(server, db, tmp_path, INDEX) as (src, _):
        code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--lock-timeout", "200ms",
                                 "--lock-retries", "1", "--lock-retry-backoff", "0.1")
        assert code == 3, doc
        assert doc["reason"] == "LockHeld"
        assert "0002_email_index" in doc["message"]
        assert "users_email" in doc["message"]  # named: dropped, or left INVALID for the next run to rebuild
        assert history(server, db) == ["0001:true", "0002:false"]
        assert index_state(server, db, "users_email") in ("missing", "INVALID")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--lock-timeout", "5s")
    assert code == 0, doc
    assert index_state(server, db, "users_email") == "valid"
    # built-in verification is on by default for SQL files: the cheap catalog checks
    assert {v["name"]: v["passed"] for v in doc["verification"]} == {"foreignKeys": True, "invalidIndexes": True}
    assert history(server, db) == ["0001:true", "0002:true"]


def test_invalid_index_left_by_an_earlier_run_is_rebuilt_not_skipped(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_users": USERS, "0002_email_index": INDEX})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src), "--target-version", "0001")[0] == 0
    with psycopg.connect(server.uri(db), sslmode="disable") as blocker, \
            psycopg.connect(server.uri(db), sslmode="disable", autocommit=True) as builder:
        blocker.execute("INSERT INTO users VALUES (100000, 'late@example.org')")
        builder.execute("SET lock_timeout = '100ms'")
        with contextlib.suppress(psycopg.errors.LockNotAvailable):
            builder.execute("CREATE INDEX CONCURRENTLY users_email ON users (email)")
        blocker.rollback()
    assert index_state(server, db, "users_email") == "INVALID"
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert index_state(server, db, "users_email") == "valid"
    assert history(server, db) == ["0001:true", "0002:true"]
    assert doc["applied"][0]["rebuiltIndexes"] == ["public.users_email"]


def test_runner_killed_during_a_concurrent_index_build_is_rebuilt_by_the_rerun(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    with writer_blocking_the_build(server, db, tmp_path, INDEX) as (src, _):
        kill_the_runner_mid_build(server, db, tmp_path, src,
                                  lambda: index_state(server, db, "users_email") == "INVALID")
    assert index_state(server, db, "users_email") == "INVALID"
    assert history(server, db) == ["0001:true"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert index_state(server, db, "users_email") == "valid"
    assert history(server, db) == ["0001:true", "0002:true"]


def test_validated_constraint_in_a_no_transaction_migration_passes_the_check(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    fk = ("-- dbops:no-transaction\n"
          "CREATE TABLE posts (id int PRIMARY KEY, user_id bigint);\n"
          "INSERT INTO posts VALUES (1, 1);\n"
          "ALTER TABLE posts ADD CONSTRAINT posts_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n"
          "ALTER TABLE posts VALIDATE CONSTRAINT posts_user_fk;\n", None)
    src = write_migrations(tmp_path / "m", {"0001_users": USERS, "0002_posts": fk})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 0, doc
    assert server.psql("SELECT convalidated FROM pg_constraint WHERE conname = 'posts_user_fk'", db) == "t"
    assert history(server, db) == ["0001:true", "0002:true"]


def test_orphan_counts_skip_tables_above_the_size_guard(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    posts = ("CREATE TABLE posts (id int PRIMARY KEY, user_id bigint);\nINSERT INTO posts VALUES (1, 999999);\n"
             "ALTER TABLE posts ADD CONSTRAINT posts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)"
             " NOT VALID;", None)
    src = write_migrations(tmp_path / "m", {"0001_users": USERS, "0002_posts": posts})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 1, doc
    assert doc["reason"] == "VerificationFailed" and "orphan" in doc["message"]
    server.psql("DELETE FROM dbops_migrations WHERE version = '0002'; DROP TABLE posts", db)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint",
                             "--orphan-scan-max-mb", "0.000001")
    assert code == 0, doc["message"]
    detail = {v["name"]: v["detail"] for v in doc["verification"]}["foreignKeys"]
    assert "orphan count skipped on 1 keys" in detail and "public.posts.posts_user_id_fkey" in detail


UNNAMED_INDEX = ("-- dbops:no-transaction\n"
                 "CREATE INDEX CONCURRENTLY ON users (email);\n", None)


def email_indexes(server: PostgresServer, db: str) -> list[str]:
    """'name:valid' for every index of users on (email)."""
    return server.psql("SELECT string_agg(c.relname || ':' || i.indisvalid, ',' ORDER BY c.relname) FROM pg_index i"
                       " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'users'::regclass"
                       " AND pg_get_indexdef(i.indexrelid) LIKE '%(email)'", db).split(",")


def test_unnamed_concurrent_index_retried_after_a_lock_timeout_leaves_one_valid_index(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    """Regression: the unnamed index was read as one named "concurrently"; the retry did not drop the first
    build's INVALID index, so a migration whose retry succeeded failed (or left a duplicate index)."""
    server, db = database
    result = tmp_path / "retry.json"
    with writer_blocking_the_build(server, db, tmp_path, UNNAMED_INDEX) as (src, blocker):
        runner = start_dbops(server, db, result, "migrate", "apply", "--source", str(src), "--lock-timeout",
                             "300ms", "--lock-retries", "3", "--lock-retry-backoff", "3")
        try:
            # The first build committed its INVALID entry and gave up waiting for the writer.
            wait_for(lambda: server.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid", db) == "1"
                     and server.psql("SELECT count(*) FROM pg_stat_progress_create_index", db) == "0")
            blocker.commit()  # the writer finishes during the backoff: the retry can build
            runner.communicate(timeout=120)
        finally:
            if runner.poll() is None:
                runner.kill()
    doc = json.loads(result.read_text())
    assert runner.returncode == 0, doc
    assert email_indexes(server, db) == ["users_email_idx1:true"]
    assert doc["applied"][0]["lockRetries"] >= 1
    assert doc["applied"][0]["rebuiltIndexes"] == ["public.users_email_idx"]
    assert history(server, db) == ["0001:true", "0002:true"]
    assert {v["name"]: v["passed"] for v in doc["verification"]}["invalidIndexes"] is True


def test_runner_killed_during_an_unnamed_concurrent_index_build_leaves_no_duplicate(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    with writer_blocking_the_build(server, db, tmp_path, UNNAMED_INDEX) as (src, _):
        kill_the_runner_mid_build(server, db, tmp_path, src,
                                  lambda: email_indexes(server, db) == ["users_email_idx:false"])
    assert history(server, db) == ["0001:true"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert email_indexes(server, db) == ["users_email_idx1:true"]
    assert doc["applied"][0]["rebuiltIndexes"] == ["public.users_email_idx"]
    assert history(server, db) == ["0001:true", "0002:true"]
