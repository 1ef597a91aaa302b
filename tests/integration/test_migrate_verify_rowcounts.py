"""Row-count verification of DatabaseMigration against real PostgreSQL 15 and 18: the default spec lets a
correct data migration change rows; listed tables and a tolerance catch what the user asks for."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.migrate_support import run_dbops, write_migrations
from tests.integration.verify_schema import DELETE_CANCELLED, SCHEMA, operator_args

from dbops_testbed.postgres import PostgresServer

BASE = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "baselineVersion": "1",
        "source": {"inline": [{"version": "2", "name": "drop_cancelled", "up": DELETE_CANCELLED}]}}


def test_default_spec_accepts_a_data_migration_deleting_ten_percent(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    source = write_migrations(tmp_path / "m", {"0002_drop_cancelled": (DELETE_CANCELLED, None)})
    code, doc, stderr = run_dbops(server, db, *operator_args(BASE, source))
    assert code == 0, (doc, stderr)
    assert server.psql("SELECT count(*) FROM bookings", db) == "18000"
    names = {v["name"]: v for v in doc["verification"]}
    assert names["foreignKeys"]["passed"] and names["invalidIndexes"]["passed"], names


@pytest.mark.parametrize(("tolerance", "passes"), [(5, False), (10, True)])
def test_listed_tables_with_a_tolerance(database: tuple[PostgresServer, str], tmp_path: Path, tolerance: int,
                                        passes: bool) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    both = DELETE_CANCELLED + "INSERT INTO users (email) SELECT 'new' || g FROM generate_series(1, 1000) g;\n"
    source = write_migrations(tmp_path / "m", {"0002_drop_cancelled": (both, None)})
    spec = {**BASE, "verify": {"builtin": ["foreignKeys", "rowCounts"],
                               "rowCounts": {"tables": ["public.bookings"], "tolerancePercent": tolerance}}}
    code, doc, stderr = run_dbops(server, db, *operator_args(spec, source))
    row_counts = {v["name"]: v for v in doc["verification"]}["rowCounts"]
    # only the listed table is compared: users changed too, and is not named
    assert "1 tables compared" in row_counts["detail"] and "users" not in row_counts["detail"], row_counts
    if passes:
        assert code == 0 and row_counts["passed"], (doc, stderr)
    else:
        assert code == 1 and doc["reason"] == "VerificationFailed", doc
        assert "public.bookings 20000→18000" in row_counts["detail"], row_counts
