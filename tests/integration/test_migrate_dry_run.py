"""A dry run leaves sequences where they were (nextval is not transactional) and says what it would do;
a failure inside a no-transaction file names the statements that were already committed."""

from __future__ import annotations

from pathlib import Path

from tests.integration.migrate_support import run_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

ORDERS = ("CREATE TABLE orders (id bigserial PRIMARY KEY, note text);\n"
          "CREATE SEQUENCE invoice_numbers START 1000;\n"
          "INSERT INTO orders (note) SELECT 'o' || g FROM generate_series(1, 5) g;", None)
BACKFILL = ("INSERT INTO orders (note) SELECT 'late' || g FROM generate_series(1, 50) g;\n"
            "SELECT nextval('invoice_numbers') FROM generate_series(1, 7);\n"
            "CREATE TABLE audit (id serial PRIMARY KEY);\nINSERT INTO audit DEFAULT VALUES;", None)
INDEX = ("-- dbops:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note ON orders (note);", None)


def positions(server: PostgresServer, db: str) -> str:
    return server.psql("SELECT string_agg(sequencename || '=' || coalesce(last_value::text, 'unused'), ',' "
                       "ORDER BY sequencename) FROM pg_sequences WHERE schemaname = 'public'", db)


def test_dry_run_does_not_advance_sequences(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_orders": ORDERS})
    assert run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")[0] == 0
    write_migrations(src, {"0002_backfill": BACKFILL, "0003_index": INDEX})
    before = positions(server, db)
    assert before == "invoice_numbers=unused,orders_id_seq=5"
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint", "--dry-run")
    assert code == 0, doc
    assert positions(server, db) == before
    assert doc["message"] == ("dry run: would apply 2 migrations (version 0001 → version 0003); 1 ran in a "
                              "rolled-back transaction, 1 no-transaction not run (0003)")
    assert "sequencesNotRestored" not in doc
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 0, doc
    assert positions(server, db) == "audit_id_seq=1,invoice_numbers=1006,orders_id_seq=55"
    assert server.psql("SELECT max(id) FROM orders", db) == "55"


def test_failure_in_a_no_transaction_file_names_the_committed_statements(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, db = database
    steps = ("-- dbops:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note ON orders (note);\n"
             "ALTER TABLE orders ADD COLUMN total numeric;\nCREATE INDEX CONCURRENTLY orders_x ON orders (nope);\n"
             "ANALYZE orders;", None)
    src = write_migrations(tmp_path / "m", {"0001_orders": ORDERS, "0002_steps": steps})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--no-lint")
    assert code == 2, doc
    message = doc["message"]
    assert "0002_steps (up) failed at statement 3 of 4" in message
    assert "statements 1-2 of this no-transaction migration were committed and stay" in message
    assert "1 (CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note" in message and "2 (ALTER TABLE orders" in message
    assert "None" not in message
