"""An Atlas migration directory applied as a user switching from Atlas would: timestamp versions (gaps), a
`-- atlas:txmode none` CONCURRENTLY index, atlas.sum verified before anything runs; a file edited after
`atlas migrate hash` is refused naming it, with nothing applied."""

from __future__ import annotations

from pathlib import Path

from tests.integration.migrate_support import run_dbops
from tests.unit.test_migration_atlas import sum_file

from dbops_testbed.postgres import PostgresServer

FILES = {
    "20240105093000_create_accounts.sql": ("CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);\n"
                                           "INSERT INTO accounts (email) SELECT 'u' || g || '@example.org'"
                                           " FROM generate_series(1, 100) g;\n"),
    "20240212120000_orders.sql": ("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, account_id bigint"
                                  " NOT NULL REFERENCES accounts (id));\n"),
    "20240212130000_orders_index.sql": ("-- atlas:txmode none\n\n"
                                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_account ON orders (account_id);\n"),
    "20240301080000_notes.sql": "-- nothing left to do: the column moved to the orders migration\n",
}


def atlas_directory(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name, text in FILES.items():
        (directory / name).write_text(text)
    (directory / "atlas.sum").write_text(sum_file(FILES))
    return directory


def test_an_atlas_directory_is_verified_then_applied(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = atlas_directory(tmp_path / "migrations")
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in src.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    (tampered / "20240212120000_orders.sql").write_text(FILES["20240212120000_orders.sql"].replace(
        "NOT NULL REFERENCES", "REFERENCES"))
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(tampered))
    assert code == 2 and doc["reason"] == "InvalidSpec", doc
    assert "migration file 20240212120000_orders.sql does not match its hash in atlas.sum" in doc["message"]
    assert server.psql("SELECT to_regclass('accounts') IS NULL AND to_regclass('dbops_migrations') IS NULL", db) == "t"

    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["20240105093000", "20240212120000", "20240212130000",
                                                      "20240301080000"]
    assert server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_account'::regclass", db) == "t"
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src))
    assert code == 0 and doc["pending"] == [] and doc["currentVersion"] == "20240301080000", doc
