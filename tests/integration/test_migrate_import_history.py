"""`migrate plan|apply --import-history`: a team switching from golang-migrate or Flyway keeps its history without
running `migrate import` by hand — the plan reads the import (nothing written), the apply records it and continues,
a second run has nothing to import, a dry run writes nothing, a dirty history is refused naming it."""

from __future__ import annotations

from pathlib import Path

from tests.integration.migrate_support import run_dbops, table_exists
from tests.integration.test_migrate_adoption import golang_migrate_history, psql_file

from dbops_testbed.postgres import PostgresServer


def golang_migrate_ran(server: PostgresServer, db: str, src: Path, count: int, *, dirty: bool = False) -> list[str]:
    """Run the first ``count`` up files as golang-migrate would and record its one-row history; their versions."""
    ups = sorted(src.glob("*.up.sql"))
    for path in ups[:count]:
        psql_file(server, db, path)
    newest = int(ups[count - 1].name.split("_")[0])
    server.psql("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);"
                f"INSERT INTO schema_migrations VALUES ({newest}, {str(dirty).lower()})", db)
    return [p.name.split("_")[0] for p in ups]


def test_plan_reads_the_import_and_apply_records_it(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = golang_migrate_history(tmp_path / "migrations")
    every = golang_migrate_ran(server, db, src, 6)
    flags = ("--source", str(src), "--allow-gaps", "--import-history", "golang-migrate")
    code, doc, _ = run_dbops(server, db, "migrate", "plan", *flags)
    assert code == 0, doc
    assert doc["importedHistory"] == every[:6] and doc["currentVersion"] == every[5]
    assert doc["plan"]["pending"] == every[6:]
    assert not table_exists(server, db, "dbops_migrations")  # the plan wrote nothing
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--dry-run", *flags)
    assert code == 0, doc
    assert not table_exists(server, db, "dbops_migrations")
    assert server.psql("SELECT count(*) FROM information_schema.columns WHERE column_name LIKE 'c%' "
                       "AND table_name = 'projects'", db) == "0"
    code, doc, _ = run_dbops(server, db, "migrate", "apply", *flags)
    assert code == 0, doc
    assert doc["importedHistory"] == every[:6] and doc["message"].startswith("imported 6 versions from golang-migrate")
    assert [a["version"] for a in doc["applied"]] == every[6:]
    assert server.psql("SELECT string_agg(kind || ':' || n, ',' ORDER BY kind) FROM (SELECT kind, count(*) n"
                       " FROM dbops_migrations GROUP BY kind) k", db) == f"imported:6,migration:{len(every) - 6}"
    assert server.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid", db) == "0"
    code, doc, _ = run_dbops(server, db, "migrate", "apply", *flags)  # idempotent: ours is no longer empty
    assert code == 0 and doc["applied"] == [] and "importedHistory" not in doc, doc


def test_a_dirty_history_is_refused_and_a_fresh_database_needs_no_import(database: tuple[PostgresServer, str],
                                                                         tmp_path: Path) -> None:
    server, db = database
    src = golang_migrate_history(tmp_path / "migrations", count=10)
    golang_migrate_ran(server, db, src, 3, dirty=True)
    flags = ("--source", str(src), "--allow-gaps", "--import-history", "golang-migrate")
    for command in ("plan", "apply"):
        code, doc, _ = run_dbops(server, db, "migrate", command, *flags)
        assert code == 2 and doc["reason"] == "DirtyHistory", doc
        assert "dirty at version 4" in doc["message"] and "migrate force" in doc["message"]
    assert not table_exists(server, db, "dbops_migrations")
    server.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", db)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", *flags)  # a new environment: nothing to import
    assert code == 0 and len(doc["applied"]) == 10 and "importedHistory" not in doc, doc
