"""Refusals say where the database is and what to do: drift (edited applied file) from `plan` and `apply` with
the current version and `dbops migrate repair` (whose reason `migrate status` then shows); an unadopted database with another tool's history table points
at `dbops migrate import`."""

from __future__ import annotations

from pathlib import Path

from tests.integration.migrate_support import run_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

HISTORY: dict[str, tuple[str, str | None]] = {
    "0001_customers_orders": (
        "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL, last_order_id bigint);\n"
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id),"
        " placed date NOT NULL);\n"
        "ALTER TABLE customers ADD CONSTRAINT customers_last_order_fk FOREIGN KEY (last_order_id)"
        " REFERENCES orders (id);\n", None),
    "0002_events": (
        "CREATE SEQUENCE event_ids;\n"
        "CREATE TABLE events (id bigint NOT NULL DEFAULT nextval('event_ids'), at date NOT NULL,"
        " customer_id bigint REFERENCES customers (id)) PARTITION BY RANGE (at);\n"
        "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');\n", None),
    "0003_seed": (
        "INSERT INTO customers (email) SELECT 'c' || g || '@example.org' FROM generate_series(1, 100) g;\n"
        "INSERT INTO orders (customer_id, placed) SELECT id, date '2026-02-01' FROM customers;\n"
        "UPDATE customers c SET last_order_id = o.id FROM orders o WHERE o.customer_id = c.id;\n"
        "INSERT INTO events (at, customer_id) SELECT date '2026-02-02', id FROM customers;\n", None),
}


def test_drift_refusals_report_the_current_version_and_point_at_repair(database: tuple[PostgresServer, str],
                                                                      tmp_path: Path) -> None:
    """Regression: `migrate plan` refused drift with currentVersion absent (the operator showed no version)."""
    server, db = database
    src = write_migrations(tmp_path / "m", HISTORY)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    edited = HISTORY["0002_events"][0].replace("CREATE SEQUENCE event_ids;", "CREATE SEQUENCE event_ids CACHE 10;")
    write_migrations(src, {"0002_events": (edited, None),
                           "0004_orders_total": ("ALTER TABLE orders ADD COLUMN total numeric(10, 2);", None)})
    for command in ("plan", "apply"):
        code, doc, _ = run_dbops(server, db, "migrate", command, "--source", str(src))
        assert code == 2 and doc["reason"] == "MigrationDrift", doc
        assert doc["currentVersion"] == "0003", doc
        assert "dbops migrate repair --version 0002" in doc["message"]
    assert server.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'total'", db) == "0"
    # Accepted with a reason: `migrate status` shows the reason next to the version (regression: it was only in
    # the table), and the run goes on.
    code, doc, _ = run_dbops(server, db, "migrate", "repair", "--source", str(src), "--version", "0002",
                             "--reason", "CACHE 10 matches production, ticket OPS-7")
    assert code == 0, doc
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src))
    assert code == 0 and doc["drift"] is None, doc
    notes = {a["version"]: a.get("repairNote") for a in doc["applied"]}
    assert notes["0001"] is None and "CACHE 10 matches production, ticket OPS-7" in notes["0002"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0 and [a["version"] for a in doc["applied"]] == ["0004"], doc


def test_an_unadopted_database_with_another_tools_history_points_at_import(database: tuple[PostgresServer, str],
                                                                          tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", HISTORY)
    server.psql(HISTORY["0001_customers_orders"][0], db)
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src))
    assert code == 2 and doc["reason"] == "BaselineRequired", doc
    assert "dbops migrate import" not in doc["message"] and "--baseline-version" in doc["message"]
    assert "currentVersion" in doc and doc["currentVersion"] is None
    server.psql("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);"
                "INSERT INTO schema_migrations VALUES (1, false)", db)
    for command in ("plan", "apply"):
        code, doc, _ = run_dbops(server, db, "migrate", command, "--source", str(src))
        assert code == 2 and doc["reason"] == "BaselineRequired", doc
        assert "public.schema_migrations exists" in doc["message"]
        assert "dbops migrate import --from golang-migrate" in doc["message"]
        assert "--baseline-version" in doc["message"]
    server.psql("DROP TABLE schema_migrations; CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY)", db)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2 and "dbops migrate import --from flyway" in doc["message"]
