"""`dbops migrate import --from goose`: a team switching from goose keeps its history.

goose's own table is generated as goose writes it: the version-0 row it adds when it creates the table, one row per
up, and for a down either a row with ``is_applied = false`` (older goose) or the version's rows deleted (goose
today). The files are goose's single-file migrations (``-- +goose Up``/``Down``, a StatementBegin/End function, a
comment-only Up, ``-- +goose NO TRANSACTION`` with CREATE INDEX CONCURRENTLY IF NOT EXISTS), FKs both ways, a
partitioned table and a sequence; the schema is what goose's runs left, so what dbops applies after the import
must fit it exactly."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.migrate_support import run_dbops, table_exists
from tests.integration.test_migrate_adoption import psql_file
from tests.integration.test_migrate_goose_dbmate import GOOSE, write

from dbops_testbed.postgres import PostgresServer

FILES = {
    **GOOSE,
    "00006_user_names.sql": """-- +goose Up
ALTER TABLE users ADD COLUMN IF NOT EXISTS display_name text;
UPDATE users SET display_name = split_part(email, '@', 1);

-- +goose Down
ALTER TABLE users DROP COLUMN display_name;
""",
    "00007_invoice_totals.sql": """-- +goose Up
ALTER TABLE invoices ADD COLUMN total_cents bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE invoices DROP COLUMN total_cents;
""",
}
GOOSE_TABLE = """CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL,
    is_applied boolean NOT NULL, tstamp timestamp DEFAULT now());
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true);"""


def section(path: Path, direction: str) -> Path:
    """One section of a goose file as its own file (goose runs the Up or the Down part)."""
    up, _, down = path.read_text().partition("-- +goose Down")
    target = path.parent.with_name(f"{path.parent.name}-sections") / f"{path.stem}.{direction}.sql"
    target.parent.mkdir(exist_ok=True)
    target.write_text(up if direction == "up" else down)
    return target


class Goose:
    """goose's runs on a database, as goose does them (``legacy``: downs insert is_applied = false)."""

    def __init__(self, server: PostgresServer, db: str, src: Path, *, legacy: bool) -> None:
        self.server, self.db, self.src, self.legacy = server, db, src, legacy
        server.psql(GOOSE_TABLE, db)

    def file(self, version: int) -> Path:
        return next(p for p in self.src.glob("*.sql") if int(p.name.split("_")[0]) == version)

    def up(self, version: int) -> None:
        psql_file(self.server, self.db, section(self.file(version), "up"))
        self.server.psql(f"INSERT INTO goose_db_version (version_id, is_applied) VALUES ({version}, true)", self.db)

    def down(self, version: int) -> None:
        psql_file(self.server, self.db, section(self.file(version), "down"))
        self.server.psql(f"INSERT INTO goose_db_version (version_id, is_applied) VALUES ({version}, false)"
                         if self.legacy else f"DELETE FROM goose_db_version WHERE version_id = {version}", self.db)


def run(server: PostgresServer, db: str, *args: str) -> tuple[int, dict[str, object]]:
    code, doc, _ = run_dbops(server, db, *args)
    return code, doc


def test_a_legacy_goose_history_with_a_rolled_back_version_is_imported_by_its_newest_rows(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write(tmp_path / "goose", FILES)
    goose = Goose(server, db, src, legacy=True)
    for version in (1, 2, 3, 4, 5):
        goose.up(version)
    goose.down(5)   # the CONCURRENTLY index dropped: row (5, false)
    goose.up(5)     # and built again: row (5, true) is newest
    goose.up(6)
    goose.down(6)   # display_name dropped: its newest row says not applied
    assert server.psql("SELECT count(*) FROM goose_db_version", db) == "10"

    code, doc = run(server, db, "migrate", "import", "--from", "goose", "--source", str(src))
    assert code == 0, doc
    assert doc["imported"] == ["00001", "00002", "00003", "00004", "00005"] and doc["currentVersion"] == "00005"
    assert doc["message"] == "imported 5 versions from goose; at version 00005"
    assert server.psql("SELECT string_agg(version, ',' ORDER BY version) FROM dbops_migrations "
                       "WHERE kind = 'imported' AND success", db) == "00001,00002,00003,00004,00005"

    code, doc = run(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["00006", "00007"]  # nothing goose had applied runs again
    assert server.psql("SELECT count(*), count(display_name) FROM users", db) == "50|50"
    assert server.psql("SELECT count(*), sum(total_cents) FROM invoices", db) == "50|0"
    assert server.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid", db) == "0"

    code, doc = run(server, db, "migrate", "import", "--from", "goose", "--source", str(src))
    assert code == 2 and doc["reason"] == "HistoryExists", doc  # once only


def test_a_current_goose_history_deletes_on_down_and_a_plan_imports_it_on_the_fly(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write(tmp_path / "goose", FILES)
    goose = Goose(server, db, src, legacy=False)
    for version in (1, 2, 3, 4, 5, 6):
        goose.up(version)
    goose.down(6)
    # without an import, dbops refuses the non-empty database and names goose's table and the way out
    code, doc = run(server, db, "migrate", "plan", "--source", str(src))
    assert code == 2 and doc["reason"] == "BaselineRequired", doc
    assert "public.goose_db_version exists: import goose's history with `dbops migrate import --from goose`" in \
        str(doc["message"])
    code, doc = run(server, db, "migrate", "plan", "--source", str(src), "--import-history", "goose")
    assert code == 0, doc
    assert doc["importedHistory"] == ["00001", "00002", "00003", "00004", "00005"]
    assert doc["plan"]["pending"] == ["00006", "00007"]  # type: ignore[index]
    assert not table_exists(server, db, "dbops_migrations")  # a plan writes nothing
    code, doc = run(server, db, "migrate", "apply", "--source", str(src), "--import-history", "goose")
    assert code == 0 and [a["version"] for a in doc["applied"]] == ["00006", "00007"], doc  # type: ignore[index]
    assert doc["importedFrom"] == {"from": "goose", "table": "public.goose_db_version", "count": 5,
                                   "newestVersion": "00005", "repeatables": []}
    assert str(doc["message"]).startswith("imported 5 versions from goose; ")


def test_a_goose_version_the_source_lacks_is_refused_naming_it(database: tuple[PostgresServer, str],
                                                              tmp_path: Path) -> None:
    server, db = database
    src = write(tmp_path / "goose", FILES)
    goose = Goose(server, db, src, legacy=False)
    for version in (1, 2, 3):
        goose.up(version)
    # a Go migration goose ran (20260105120000_backfill.go): no SQL file in the source
    server.psql("INSERT INTO goose_db_version (version_id, is_applied) VALUES (20260105120000, true)", db)
    code, doc = run(server, db, "migrate", "import", "--from", "goose", "--source", str(src))
    assert code == 2 and doc["reason"] == "MigrationDrift", doc
    message = str(doc["message"])
    assert "goose history public.goose_db_version records versions ['20260105120000']" in message
    assert "Go migrations" in message
    assert not table_exists(server, db, "dbops_migrations")
    assert re.search(r"imported", message) is None
