"""`dbops verify-db` and `migrate apply --verify` against real PostgreSQL 15 and 18: orphan rows,
invalid indexes, row counts and user checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.integration.migrate_support import run_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

SCHEMA = """
CREATE TABLE mentorship_mentors (id int PRIMARY KEY, name text);
CREATE TABLE mentorship_bookings (id int PRIMARY KEY, mentor_id int REFERENCES mentorship_mentors (id),
                                  status text);
INSERT INTO mentorship_mentors VALUES (1, 'ada'), (2, 'grace');
INSERT INTO mentorship_bookings VALUES (1, 1, 'pending'), (2, 2, 'done'), (3, NULL, 'pending');
"""


def verification(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    return {v["name"]: v for v in doc["verification"]}  # type: ignore[index, union-attr, attr-defined]


def test_clean_database_passes(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    code, doc, _ = run_dbops(server, db, "verify-db")
    assert code == 0, doc
    results = verification(doc)
    assert results["foreignKeys"]["passed"] and "1 foreign keys checked" in str(results["foreignKeys"]["detail"])
    assert results["invalidIndexes"]["passed"]
    assert "skipped" in str(results["rowCounts"]["detail"])


@pytest.mark.parametrize("how", ["replica-role", "not-valid"])
def test_a_seeded_orphan_row_is_caught(database: tuple[PostgresServer, str], how: str) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    if how == "replica-role":
        server.psql("SET session_replication_role = replica;"
                    " INSERT INTO mentorship_bookings VALUES (4, 99, 'orphan')", db)
    else:
        server.psql("ALTER TABLE mentorship_bookings DROP CONSTRAINT mentorship_bookings_mentor_id_fkey;"
                    " INSERT INTO mentorship_bookings VALUES (4, 99, 'orphan');"
                    " ALTER TABLE mentorship_bookings ADD CONSTRAINT bookings_mentor FOREIGN KEY (mentor_id)"
                    " REFERENCES mentorship_mentors (id) NOT VALID", db)
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "foreignKeys,orphans")
    assert code == 1 and doc["reason"] == "VerificationFailed"
    results = verification(doc)
    assert results["foreignKeys"]["passed"] is False
    orphan = next(v for name, v in results.items() if name.startswith("orphans:public.mentorship_bookings."))
    assert orphan["passed"] is False
    assert str(orphan["detail"]).startswith("1 rows of public.mentorship_bookings(mentor_id)")
    if how == "not-valid":
        assert "NOT VALID" in str(orphan["detail"]) and "1 NOT VALID" in str(results["foreignKeys"]["detail"])


def test_an_invalid_index_is_caught(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    with pytest.raises(subprocess.CalledProcessError):
        server.psql("CREATE UNIQUE INDEX CONCURRENTLY bookings_status ON mentorship_bookings (status)", db)
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "invalidIndexes")
    assert code == 1
    detail = str(verification(doc)["invalidIndexes"]["detail"])
    assert "public.bookings_status on mentorship_bookings" in detail


def test_user_checks_pass_and_fail_as_expected(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "- name: no-orphan-bookings\n"
        "  sql: SELECT b.id FROM mentorship_bookings b LEFT JOIN mentorship_mentors m ON b.mentor_id = m.id"
        " WHERE b.mentor_id IS NOT NULL AND m.id IS NULL\n"
        "  expect: {rows: 0}\n"
        "- name: some-mentors\n  sql: SELECT count(*) FROM mentorship_mentors\n  expect: {min: 1, max: 10}\n"
        "- name: pending\n  sql: SELECT count(*) FROM mentorship_bookings WHERE status = 'pending'\n"
        "  expect: {equals: 2}\n"
    )
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "none", "--checks-file", str(checks))
    assert code == 0, doc
    assert all(v["passed"] for v in doc["verification"])
    checks.write_text(
        "- name: too-many\n  sql: SELECT count(*) FROM mentorship_mentors\n  expect: {max: 1}\n"
        "- name: writes-are-refused\n  sql: DELETE FROM mentorship_mentors RETURNING id\n  expect: {rows: 0}\n"
        "- name: still-fine\n  sql: SELECT 'ok'\n  expect: {equals: ok}\n"
    )
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "none", "--checks-file", str(checks))
    assert code == 1
    results = verification(doc)
    assert results["too-many"]["passed"] is False and "at most 1" in str(results["too-many"]["detail"])
    assert results["writes-are-refused"]["passed"] is False
    assert "read-only" in str(results["writes-are-refused"]["detail"])
    assert results["still-fine"]["passed"] is True
    assert server.psql("SELECT count(*) FROM mentorship_mentors", db) == "2"


def test_row_counts_before_and_after(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    counts = tmp_path / "counts.json"
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "none", "--row-counts-out", str(counts))
    assert code == 0
    assert json.loads(counts.read_text()) == {"public.mentorship_bookings": 3, "public.mentorship_mentors": 2}
    server.psql("DELETE FROM mentorship_bookings WHERE id = 3", db)
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "rowCounts", "--row-counts-before", str(counts))
    assert code == 1 and "public.mentorship_bookings 3→2" in str(verification(doc)["rowCounts"]["detail"])
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "rowCounts", "--row-counts-before", str(counts),
                             "--row-count-tolerance", "50")
    assert code == 0, doc


def test_apply_with_verify_reports_orphans_left_by_a_migration(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    server.psql(SCHEMA + "INSERT INTO mentorship_bookings VALUES (4, NULL, 'x');", db)
    src = write_migrations(tmp_path / "m", {
        "0001_loose_fk": (
            "ALTER TABLE mentorship_bookings DROP CONSTRAINT mentorship_bookings_mentor_id_fkey;\n"
            "UPDATE mentorship_bookings SET mentor_id = 42 WHERE id = 4;\n"
            "ALTER TABLE mentorship_bookings ADD CONSTRAINT bookings_mentor FOREIGN KEY (mentor_id)"
            " REFERENCES mentorship_mentors (id) NOT VALID;", None),
    })
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--baseline-version", "0",
                             "--verify", "--no-lint")
    assert code == 1, doc
    assert doc["currentVersion"] == "0001"
    results = verification(doc)
    assert results["foreignKeys"]["passed"] is False
    assert results["rowCounts"]["passed"] is True  # the history table is not counted
