"""spec.verify.queries and the size report, through the apply Job's own arguments, against PostgreSQL 15 and 18:
EXPLAIN of application queries after migrating, with assertions on partitioned tables and their indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.migrate_support import run_dbops, write_migrations
from tests.integration.verify_schema import SCHEMA, operator_args

from dbops_testbed.postgres import PostgresServer

BY_USER = "SELECT id, starts_at FROM bookings WHERE user_id = 42 ORDER BY starts_at"
PENDING = "SELECT count(*) FROM bookings WHERE status = 'pending'"


def spec(up: str, queries: list[dict[str, Any]], **verify: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "baselineVersion": "1",
            "source": {"inline": [{"version": "2", "name": "change", "up": up}]},
            "verify": {"queries": queries, **verify}}


def apply(database: tuple[PostgresServer, str], tmp_path: Path, up: str, queries: list[dict[str, Any]],
          **verify: Any) -> tuple[int, dict[str, Any]]:
    server, db = database
    server.psql(SCHEMA, db)
    source = write_migrations(tmp_path / "m", {"0002_change": (up, None)})
    code, doc, stderr = run_dbops(server, db, *operator_args(spec(up, queries, **verify), source))
    assert doc, stderr
    return code, doc


def results(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc.get("verification") or []}


def test_plans_that_hold_pass_and_are_kept(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    queries = [{"name": "by-user", "sql": BY_USER, "usesIndex": ["bookings_user_idx"],
                "noSeqScanOn": ["bookings", "public.users"], "maxCost": 5000},
               {"name": "pending", "sql": PENDING, "usesIndex": ["public.bookings_status_idx"]}]
    code, doc = apply(database, tmp_path, "ALTER TABLE users ADD COLUMN nickname text;", queries)
    assert code == 0, doc
    by_user = results(doc)["query:by-user"]
    assert by_user["passed"] and "total cost" in by_user["detail"], by_user
    # the plan names the partitions' own indexes, which count for the partitioned index asked for
    assert "bookings_2025_user_id_idx" in by_user["plan"] and "Seq Scan" not in by_user["plan"], by_user
    assert results(doc)["query:pending"]["passed"], results(doc)


def test_an_index_dropped_by_the_migration_fails_naming_query_and_index(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    queries = [{"name": "pending", "sql": PENDING, "usesIndex": ["bookings_status_idx"]},
               {"name": "by-user", "sql": BY_USER, "usesIndex": ["bookings_user_idx"]}]
    code, doc = apply(database, tmp_path, "DROP INDEX bookings_status_idx;", queries)
    assert code == 1 and doc["reason"] == "VerificationFailed", doc
    assert "query:pending: usesIndex bookings_status_idx: the index does not exist" in doc["message"], doc
    assert results(doc)["query:by-user"]["passed"], results(doc)
    server, db = database
    assert server.psql("SELECT count(*) FROM dbops_migrations WHERE version = '0002'", db) == "1"  # applied


def test_seq_scan_on_a_partition_counts_for_its_table(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    queries = [{"name": "by-user", "sql": BY_USER, "noSeqScanOn": ["bookings"], "usesIndex": ["bookings_user_idx"]}]
    code, doc = apply(database, tmp_path, "DROP INDEX bookings_user_idx;", queries)
    assert code == 1, doc
    detail = results(doc)["query:by-user"]["detail"]
    assert "noSeqScanOn bookings: Seq Scan on public.bookings_2025, public.bookings_2026" in detail, detail
    assert "usesIndex bookings_user_idx: the index does not exist" in detail, detail


def test_cost_bound_and_a_query_that_no_longer_plans(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    queries = [{"name": "all-bookings", "sql": "SELECT * FROM bookings", "maxCost": 10},
               {"name": "old-column", "sql": "SELECT status FROM bookings WHERE user_id = 1"}]
    code, doc = apply(database, tmp_path, "ALTER TABLE bookings RENAME COLUMN status TO state;", queries)
    assert code == 1, doc
    found = results(doc)
    assert "is above maxCost 10" in found["query:all-bookings"]["detail"], found
    assert 'EXPLAIN failed: column "status" does not exist' in found["query:old-column"]["detail"], found


def test_analyze_runs_the_statement_and_rolls_it_back(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    queries = [{"name": "purge", "sql": "DELETE FROM bookings WHERE status = 'cancelled'", "analyze": True}]
    code, doc = apply(database, tmp_path, "ALTER TABLE users ADD COLUMN nickname text;", queries)
    assert code == 0, doc
    purge = results(doc)["query:purge"]
    assert purge["detail"].endswith(" ms") and "actual=" in purge["plan"], purge
    server, db = database
    assert server.psql("SELECT count(*) FROM bookings", db) == "20000"


def test_sizes_name_created_and_dropped_indexes(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    up = ("DROP INDEX bookings_status_idx;\nCREATE INDEX users_email_lower_idx ON users (lower(email));\n"
          "INSERT INTO users (email) SELECT 'bulk' || g FROM generate_series(1, 5000) g;\n")
    code, doc = apply(database, tmp_path, up, [], sizes={"top": 3})
    assert code == 0, doc
    indexes = {i["name"]: i for i in doc["sizes"]["indexes"]}
    assert indexes["public.users_email_lower_idx"]["bytesBefore"] is None
    assert indexes["public.users_email_lower_idx"]["bytesAfter"] > 0
    dropped = [name for name, i in indexes.items() if i["bytesAfter"] is None]
    assert dropped and all(name.startswith(("public.bookings_status_idx", "public.bookings_202")) for name in dropped)
    assert len(doc["sizes"]["indexes"]) == 3 and doc["sizes"]["omitted"] > 0, doc["sizes"]
    tables = {t["name"]: t for t in doc["sizes"]["tables"]}
    assert tables["public.users"]["bytesAfter"] > tables["public.users"]["bytesBefore"], tables
