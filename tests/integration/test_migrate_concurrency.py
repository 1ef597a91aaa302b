"""Two `dbops migrate apply` runs at once: the advisory lock lets exactly one apply; a SIGKILLed
holder releases the lock with its session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.migrate_support import run_dbops, start_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer


def wait_for_lock_holder(server: PostgresServer, db: str, process: subprocess.Popen[str],
                         timeout: float = 120) -> None:
    """Wait until a dbops session holds an advisory lock and runs a statement (no sleeps as sync)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        held = server.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            f" WHERE l.locktype = 'advisory' AND l.granted AND a.datname = '{db}'"
            " AND a.query ILIKE '%pg_sleep%' AND a.state = 'active'", db)
        if held == "1":
            return
        time.sleep(0.05)
    raise AssertionError("the first runner never took the lock")


def test_two_concurrent_applies_exactly_one_applies(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {
        "0001_slow": ("CREATE TABLE slow (id int);\nSELECT pg_sleep(3);", None),
        "0002_next": ("CREATE TABLE next (id int);", None),
    })
    first_result = tmp_path / "first.json"
    first = start_dbops(server, db, first_result, "migrate", "apply", "--source", str(src), "--no-lint")
    try:
        wait_for_lock_holder(server, db, first)
        code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint",
                                 "--lock-wait-timeout", "200ms")
        assert code == 3 and doc["reason"] == "LockHeld"
        assert "another migration holds the lock" in doc["message"]
        code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint",
                                 "--lock-wait-timeout", "120s")
        first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0
    first_doc = json.loads(first_result.read_text())
    assert [a["version"] for a in first_doc["applied"]] == ["0001", "0002"]
    assert code == 0 and doc["applied"] == [] and doc["currentVersion"] == "0002"
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
        wait_for_lock_holder(server, db, holder)
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
