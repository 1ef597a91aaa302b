"""Command mode's row counts and sizes as the operator's Jobs take them: `migrate snapshot --row-counts --sizes` (the
command Job's init container) before a real Django project's data migration, `verify-db --snapshot-run` after.

Data as a user has it: users ⇄ bookings (foreign keys both ways), a partitioned events table referencing
bookings (ON DELETE CASCADE), and Django's own bookkeeping tables, which change on every migrate and are never
counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from tests.integration.migrate_support import dbops_env, run_dbops

from dbops.runner import row_counts
from dbops_testbed.postgres import PostgresServer

MANAGE = Path(__file__).parent / "django_app" / "manage.py"
BOOKKEEPING = {"public.django_migrations", "public.django_content_type", "public.auth_permission"}
SCHEMA = """
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, last_booking_id int);
CREATE TABLE bookings (id serial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id), starts_at date NOT NULL);
ALTER TABLE users ADD FOREIGN KEY (last_booking_id) REFERENCES bookings (id) ON DELETE SET NULL;
CREATE TABLE events (id bigserial, at date NOT NULL, booking_id int REFERENCES bookings (id) ON DELETE CASCADE)
    PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO users (email) SELECT 'u' || g || '@example.org' FROM generate_series(1, 200) g;
INSERT INTO bookings (user_id, starts_at) SELECT 1 + g % 200, date '2025-06-01' + g FROM generate_series(1, 500) g;
UPDATE users SET last_booking_id = id * 2;
INSERT INTO events (at, booking_id) SELECT date '2025-10-01' + (g % 200), 1 + g % 500 FROM generate_series(0, 999) g;
"""


def django(server: PostgresServer, db: str, tmp_path: Path, *args: str, extra_apps: str = "") -> None:
    """Run manage.py as the command Job would: the user's command, the connection from our env."""
    subprocess.run([sys.executable, str(MANAGE), *args, "--noinput"], check=True, capture_output=True, timeout=300,
                   env=dbops_env(server, db, tmp_path / "unused.json", MENTORHUB_EXTRA_APPS=extra_apps))


def prepared(server: PostgresServer, db: str, tmp_path: Path) -> None:
    """The application's data, and its first release migrated (so Django's own tables exist and have rows)."""
    server.psql(SCHEMA, db)
    django(server, db, tmp_path, "migrate")


def snapshot(server: PostgresServer, db: str, run: str, *extra: str) -> dict[str, Any]:
    code, doc, stderr = run_dbops(server, db, "migrate", "snapshot", "--run", run, "--row-counts", "--sizes", *extra)
    assert code == 0 and doc["recorded"] is True, (doc, stderr)
    return doc


def recorded_counts(server: PostgresServer, db: str, run: str) -> dict[str, Any]:
    text = server.psql(f"SELECT measures -> 'rowCounts' FROM dbops_framework_snapshots WHERE run = '{run}'", db)
    return dict(json.loads(text))


def verify(server: PostgresServer, db: str, run: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    return run_dbops(server, db, "verify-db", "--builtin", "foreignKeys,invalidIndexes,rowCounts",
                     "--snapshot-run", run, *extra)


def row_count_result(doc: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in doc["verification"] if v["name"] == "rowCounts")


def test_a_data_migration_beyond_the_tolerance_fails_naming_the_table_and_its_counts(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    prepared(server, db, tmp_path)
    doc = snapshot(server, db, "rev-1")
    counted = recorded_counts(server, db, "rev-1")
    # the partitioned table once (not its partitions); never Django's bookkeeping nor our own tables
    tables = set(counted["counts"])
    assert {"public.users", "public.bookings", "public.events", "public.mentorship_booking",
            "public.auth_user"} <= tables, counted  # auth_user holds the application's users: counted
    assert not tables & BOOKKEEPING and not {"public.events_2025", "public.dbops_framework_snapshots"} & tables
    assert counted["counts"]["public.events"] == 1000 and counted["estimated"] == [] and counted["omitted"] == 0
    assert doc["rowCountTables"] == len(tables) and f"row counts of {len(tables)} tables (0 estimated)" in doc["message"]
    django(server, db, tmp_path, "migrate", "cleanup", extra_apps="cleanup")
    assert server.psql("SELECT count(*) FROM bookings", db) == "450"

    code, doc, _ = verify(server, db, "rev-1", "--row-count-tolerance", "5")
    assert code == 1, doc
    result = row_count_result(doc)
    assert result["passed"] is False
    assert "public.bookings 500→450" in result["detail"] and "public.events 1000→900" in result["detail"]
    assert "tolerance 5%" in result["detail"] and "django" not in result["detail"]
    assert "rowCounts" in doc["message"] and "public.bookings 500→450" in doc["message"]
    assert doc["frameworkHistory"][0]["added"] == ["cleanup.0001_prune_bookings"]
    (index,) = [i for i in doc["sizes"]["indexes"] if i["name"] == "public.bookings_user_idx"]
    assert index["bytesBefore"] is None and index["bytesAfter"] > 0 and index["table"] == "public.bookings"
    bookings = next(t for t in doc["sizes"]["tables"] if t["name"] == "public.bookings")
    assert bookings["bytesBefore"] > 0 and bookings["bytesAfter"] > bookings["bytesBefore"]  # the new index
    assert server.psql("SELECT count(*) FROM dbops_framework_snapshots", db) == "0"  # dropped once verified


def test_within_the_tolerance_it_passes_and_an_app_rolled_back_to_zero_too(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    prepared(server, db, tmp_path)
    snapshot(server, db, "rev-1")
    django(server, db, tmp_path, "migrate", "cleanup", extra_apps="cleanup")
    code, doc, _ = verify(server, db, "rev-1", "--row-count-tolerance", "20")
    assert code == 0, doc
    assert row_count_result(doc)["passed"] and "10 tables compared (tolerance 20%)" in row_count_result(doc)["detail"]

    # Rolling the app back removes its django_migrations row (and the index): no user table changes.
    snapshot(server, db, "rev-2")
    django(server, db, tmp_path, "migrate", "cleanup", "zero", extra_apps="cleanup")
    code, doc, _ = verify(server, db, "rev-2")
    assert code == 0, doc
    assert row_count_result(doc)["detail"] == "10 tables compared (tolerance 0%)"
    assert doc["frameworkHistory"][0]["removed"] == ["cleanup.0001_prune_bookings"]
    (index,) = [i for i in doc["sizes"]["indexes"] if i["name"] == "public.bookings_user_idx"]
    assert index["bytesBefore"] > 0 and index["bytesAfter"] is None


def test_listed_tables_only_and_large_tables_estimated(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    prepared(server, db, tmp_path)
    server.psql("ANALYZE", db)
    # a guard of 1 KiB: every table is "large", so none is scanned; the statistics' estimates are compared
    doc = snapshot(server, db, "rev-1", "--row-count-tables", "bookings,public.events",
                   "--row-count-exact-max-mb", "0.001")
    counted = recorded_counts(server, db, "rev-1")
    assert set(counted["counts"]) == {"public.bookings", "public.events"}
    assert counted["estimated"] == ["public.bookings", "public.events"] and counted["counts"]["public.events"] == 1000
    assert "2 estimated" in doc["message"]
    # no ANALYZE after it: pg_class.reltuples would still say 500, the statistics' live rows say 450 at once
    server.psql("DELETE FROM bookings WHERE id % 10 = 0", db)
    assert server.psql("SELECT reltuples FROM pg_class WHERE relname = 'bookings'", db) == "500"
    code, doc, _ = verify(server, db, "rev-1", "--row-count-tables", "bookings,public.events",
                          "--row-count-tolerance", "5", "--row-count-exact-max-mb", "0.001")
    assert code == 1, doc
    detail = row_count_result(doc)["detail"]
    assert "2 tables compared" in detail and "public.bookings 500→450" in detail
    assert "estimated from statistics (n_live_tup) (over 0.001 MiB): public.bookings, public.events" in detail


def test_beyond_the_bound_tables_are_named_as_not_counted(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    with psycopg.connect(server.uri(db), autocommit=True) as connection:
        before = row_counts.count(connection, limit=2)
        assert sorted(before.counts) == ["public.bookings", "public.events"] and before.omitted == 1
        connection.execute("CREATE TABLE audit (id int);"
                           "INSERT INTO users (email) SELECT 'new' || g FROM generate_series(1, 100) g")
        after = row_counts.after(connection, before, ())
        assert sorted(after.counts) == ["public.bookings", "public.events"]  # neither users nor the new audit
        passed, detail = row_counts.compare(before, after, 0)
    assert passed and "1 tables not counted (more than 2 tables" in detail and "new:" not in detail


def test_without_counts_from_before_row_counts_say_why(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    code, doc, _ = run_dbops(server, db, "migrate", "snapshot", "--run", "rev-1")  # rowCounts not asked for
    assert code == 0, doc
    code, doc, _ = verify(server, db, "rev-1")
    assert code == 0, doc
    assert "skipped: no row counts were recorded before the command" in row_count_result(doc)["detail"]
    assert all("bytesBefore" not in t for t in doc["sizes"]["tables"])  # sizes after only, as before


def test_many_size_changes_fit_the_result_without_cutting_the_verification(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    snapshot(server, db, "rev-1")
    django(server, db, tmp_path, "migrate", extra_apps="cleanup")  # every app from nothing: ~40 relations
    code, doc, stderr = verify(server, db, "rev-1", "--sizes-top", "25", "--row-count-tolerance", "20")
    assert code == 0, doc
    assert not doc.get("truncated") and {v["name"] for v in doc["verification"]} == {
        "foreignKeys", "invalidIndexes", "rowCounts"}
    sizes = doc["sizes"]
    shown = len(sizes["tables"]) + len(sizes["indexes"])
    assert shown and sizes["omitted"] > 0 and "4 KiB" in sizes["note"], sizes
    assert "dbops: sizes " in stderr  # every entry in the Job's log
    logged = json.loads(stderr.split("dbops: sizes ", 1)[1].splitlines()[0])
    assert len(logged["tables"]) + len(logged["indexes"]) == shown + sizes["omitted"] - logged["omitted"]


def test_migrate_apply_command_leaves_row_counts_opt_in_as_the_operator_does(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    """`migrate apply --command` verifies what a DatabaseMigration verifies by default (no rowCounts): a Django
    release with a data migration succeeds; asking for rowCounts at tolerance 0 fails it (issue 11, defect 2)."""
    server, db = database
    prepared(server, db, tmp_path)
    command = ["--command", "--", sys.executable, str(MANAGE), "migrate", "cleanup", "--noinput"]
    cleanup = {"MENTORHUB_EXTRA_APPS": "cleanup"}
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", "--verify-builtin",
                                  "foreignKeys,orphans,invalidIndexes,rowCounts", *command, env=cleanup)
    assert code == 1 and doc["reason"] == "VerificationFailed", (doc, stderr)
    assert "public.bookings 500→450" in row_count_result(doc)["detail"]
    assert server.psql("SELECT count(*) FROM bookings", db) == "450"  # committed before verifying

    django(server, db, tmp_path, "migrate", "cleanup", "zero", extra_apps="cleanup")
    server.psql("INSERT INTO bookings (id, user_id, starts_at) SELECT g * 10, 1, date '2025-06-01'"
                " FROM generate_series(100, 149) g", db)  # 50 rows the data migration deletes again
    code, doc, stderr = run_dbops(server, db, "migrate", "apply", *command, env=cleanup)
    assert code == 0, (doc, stderr)
    assert server.psql("SELECT count(*) FROM bookings", db) == "450"
    assert {v["name"] for v in doc["verification"]} == {"foreignKeys", "invalidIndexes"}  # orphans: in foreignKeys
    assert doc["frameworkHistory"]["added"] == ["cleanup.0001_prune_bookings"]
