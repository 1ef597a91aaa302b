"""A constraint added NOT VALID and meant to be validated in a no-transaction migration: when the VALIDATE fails
(orphan rows) or is stopped by the lock timeout, the migration is not recorded as applied, the constraint is named,
and the re-run (data fixed, lock gone) re-adds and validates it instead of failing on "already exists"."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
from tests.integration.migrate_support import run_dbops, start_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

# customers ⇄ orders: foreign keys in both directions (a customer's last order, an order's customer).
SCHEMA = ("CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, last_order_id bigint);\n"
          "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, total numeric(10, 2), note text);\n"
          "INSERT INTO customers SELECT g, 'c' || g || '@example.org', NULL FROM generate_series(1, 2000) g;\n"
          "INSERT INTO orders SELECT g, 1 + g % 2000, g % 97, NULL FROM generate_series(1, 20000) g;\n"
          "UPDATE customers SET last_order_id = id WHERE id <= 1000;\n"
          "ALTER TABLE customers ADD CONSTRAINT customers_last_order_fk FOREIGN KEY (last_order_id)"
          " REFERENCES orders (id);\n", None)
# The strong-migrations way: add NOT VALID (brief lock), clean up, validate (no write lock) — statement by statement.
ORDERS_FK = ("-- dbops:no-transaction\n"
             "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id)"
             " REFERENCES customers (id) NOT VALID;\n"
             "UPDATE orders SET note = 'customer checked' WHERE id % 1000 = 0;\n"
             "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;\n", None)


def constraint_state(server: PostgresServer, db: str) -> str:
    """'valid', 'NOT VALID' or 'missing'."""
    state = server.psql("SELECT CASE WHEN convalidated THEN 'valid' ELSE 'NOT VALID' END FROM pg_constraint"
                        " WHERE conname = 'orders_customer_fk'", db)
    return state or "missing"


def history(server: PostgresServer, db: str) -> list[str]:
    return server.psql("SELECT version || ':' || success FROM dbops_migrations ORDER BY version", db).splitlines()


def test_validate_failing_on_orphans_is_not_recorded_and_the_rerun_rebuilds_the_constraint(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_schema": SCHEMA})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")[0] == 0
    server.psql("INSERT INTO orders VALUES (900001, 424242, 10, NULL)", db)  # an order of a deleted customer
    write_migrations(src, {"0002_orders_customer_fk": ORDERS_FK})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code != 0, doc
    assert "0002_orders_customer_fk" in doc["message"] and "orders_customer_fk" in doc["message"]
    assert history(server, db) == ["0001:true", "0002:false"]
    assert constraint_state(server, db) in ("missing", "NOT VALID")
    server.psql("DELETE FROM orders WHERE id = 900001", db)  # the team fixes the data and runs it again
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 0, doc
    assert constraint_state(server, db) == "valid"
    assert history(server, db) == ["0001:true", "0002:true"]
    assert server.psql("SELECT count(*) FROM orders WHERE note = 'customer checked'", db) == "20"


def test_validate_stopped_by_the_lock_timeout_is_not_recorded_and_the_rerun_validates(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_schema": SCHEMA})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")[0] == 0
    write_migrations(src, {"0002_orders_customer_fk": ORDERS_FK})
    # An application transaction holds order 1000 (the cleanup UPDATE waits for it); meanwhile a maintenance
    # session's ANALYZE takes SHARE UPDATE EXCLUSIVE on orders, so when the row is released the VALIDATE
    # waits for that session and hits the lock timeout, after the ADD committed.
    with psycopg.connect(server.uri(db), sslmode="disable") as app, \
            psycopg.connect(server.uri(db), sslmode="disable") as maintenance, \
            psycopg.connect(server.uri(db), sslmode="disable", autocommit=True) as observer:
        app.execute("SELECT 1 FROM orders WHERE id = 1000 FOR UPDATE")
        runner = start_dbops(server, db, tmp_path / "result.json", "migrate", "apply", "--source", str(src),
                             "--no-lint", "--lock-timeout", "5s", "--lock-retries", "1",
                             "--lock-retry-backoff", "0.1")
        try:
            deadline = time.monotonic() + 60
            while observer.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbops'"
                                   " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE orders%'"
                                   ).fetchone() != (1,):
                assert time.monotonic() < deadline and runner.poll() is None, runner.communicate()
                time.sleep(0.05)
            assert constraint_state(server, db) == "NOT VALID"
            maintenance.execute("ANALYZE orders")
            app.commit()
            _, stderr = runner.communicate(timeout=180)
        finally:
            if runner.poll() is None:
                runner.kill()
        doc = json.loads((tmp_path / "result.json").read_text())
        assert runner.returncode == 3, (doc, stderr)
        assert doc["reason"] == "LockHeld"
        assert "orders_customer_fk" in doc["message"]
        assert history(server, db) == ["0001:true", "0002:false"]
        assert constraint_state(server, db) in ("missing", "NOT VALID")
        maintenance.commit()
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 0, doc
    assert constraint_state(server, db) == "valid"
    assert history(server, db) == ["0001:true", "0002:true"]
