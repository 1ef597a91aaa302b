"""Two `dbops migrate apply` runs at once: the advisory lock lets exactly one apply; a SIGKILLed
holder releases the lock with its session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from tests.integration.migrate_support import run_dbops, start_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

GATE = 4242  # an advisory lock the test holds; the first migration waits for it


def wait_for_lock_holder(server: PostgresServer, db: str, process: subprocess.Popen[str], waiting_on: str,
                         timeout: float = 120) -> None:
    """Wait until a dbops session holds the migration lock and is stuck in the first migration."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(server.uri(db), sslmode="disable", autocommit=True) as observer:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_activity a WHERE a.datname = current_database()"
                " AND a.application_name = 'dbops' AND a.query ILIKE %s"
                " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'"
                "             AND l.granted)",
                (f"%{waiting_on}%",),
            ).fetchone()
            if row and row[0] == 1:
                return
            time.sleep(0.02)
    raise AssertionError("the first runner never took the lock")


def test_two_concurrent_applies_exactly_one_applies(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {
        "0001_gated": (f"CREATE TABLE gated (id int);\nSELECT pg_advisory_xact_lock({GATE});", None),
        "0002_next": ("CREATE TABLE next (id int);", None),
    })
    with psycopg.connect(server.uri(db), sslmode="disable", autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        first = start_dbops(server, db, tmp_path / "first.json", "migrate", "apply", "--source", str(src),
                            "--no-lint", "--lock-timeout", "0")
        second = None
        try:
            wait_for_lock_holder(server, db, first, waiting_on="pg_advisory_xact_lock")
            code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint",
                                     "--lock-wait-timeout", "200ms")
            assert code == 3 and doc["reason"] == "LockHeld"
            assert "another migration holds the lock" in doc["message"]
            second = start_dbops(server, db, tmp_path / "second.json", "migrate", "apply", "--source", str(src),
                                 "--no-lint", "--lock-wait-timeout", "120s")
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
            first.communicate(timeout=120)
            second.communicate(timeout=120)
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.communicate()
    assert first.returncode == 0 and second.returncode == 0
    first_doc = json.loads((tmp_path / "first.json").read_text())
    second_doc = json.loads((tmp_path / "second.json").read_text())
    assert [a["version"] for a in first_doc["applied"]] == ["0001", "0002"]
    assert second_doc["applied"] == [] and second_doc["currentVersion"] == "0002"
    assert server.psql("SELECT count(*) FROM dbops_migrations", db) == "2"


def test_sigkilled_lock_holder_releases_the_lock_within_5_seconds(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    hanging = write_migrations(tmp_path / "hang", {"0001_users": ("CREATE TABLE users (id int);\n"
                                                                  "SELECT pg_sleep(600);", None)})
    quick = write_migrations(tmp_path / "quick", {"0001_users": ("CREATE TABLE users (id int);", None)})
    holder = start_dbops(server, db, tmp_path / "holder.json", "migrate", "apply", "--source", str(hanging),
                         "--no-lint")
    try:
        wait_for_lock_holder(server, db, holder, waiting_on="pg_sleep")
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(quick), "--no-lint",
                             "--lock-wait-timeout", "5s")
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["0001"]
    assert server.psql("SELECT checksum = encode(sha256(convert_to('CREATE TABLE users (id int);', 'UTF8')), 'hex')"
                       " FROM dbops_migrations", db) == "t"
    assert server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
                       " AND query ILIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()", db) == "0"
