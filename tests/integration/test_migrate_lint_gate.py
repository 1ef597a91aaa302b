"""Lint still gates the apply now that squawk runs while dbops takes its before-snapshots (P6): an error-level
finding in the last file of a long plan stops the run before the first migration, the history table included;
a CRLF file (linted from a copy) and a no-transaction file are linted like the others."""

from __future__ import annotations

from pathlib import Path

from tests.integration.migrate_support import run_dbops, table_exists, write_migrations

from dbops_testbed.postgres import PostgresServer


def plan_of(last: str) -> dict[str, tuple[str, str | None]]:
    files: dict[str, tuple[str, str | None]] = {
        f"{n:04d}_table_{n}": (f"CREATE TABLE t{n} (id bigint PRIMARY KEY, label text NOT NULL);\n"
                               f"INSERT INTO t{n} VALUES (1, 'one');\n", None)
        for n in range(1, 40)
    }
    files["0040_index"] = ("-- dbops:no-transaction\nCREATE INDEX CONCURRENTLY t1_label ON t1 (label);\n", None)
    files["0041_last"] = (last, None)
    return files


def test_an_error_in_the_last_file_stops_the_run_before_anything_changes(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", plan_of("CREATE TABLE oops (id bigint PRIMARY KEY,;\n"))
    (src / "0002_table_2.up.sql").write_bytes(b"CREATE TABLE t2 (id bigint PRIMARY KEY, label text NOT NULL);\r\n")

    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))

    assert code == 2 and doc["reason"] == "LintFailed", doc
    assert "0041" in doc["message"] and "syntax-error" in doc["message"], doc
    assert not doc.get("applied"), doc
    for relation in ("t1", "t2", "t39", "t1_label", "dbops_migrations"):
        assert not table_exists(server, db, relation), relation

    write_migrations(src, {"0041_last": ("ALTER TABLE t1 DROP COLUMN label;\n", None)})
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--lint-fail-on", "warning")
    assert code == 2 and doc["reason"] == "LintFailed" and "ban-drop-column" in doc["message"], doc
    assert not table_exists(server, db, "t1") and not table_exists(server, db, "dbops_migrations")

    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert doc["currentVersion"] == "0041"
    assert server.psql("SELECT count(*) FROM dbops_migrations WHERE success", db) == "41"
    assert not table_exists(server, db, "oops")
