"""Migration sources: statement splitting, the file naming convention, inline lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbops import errors
from dbops.runner.migrations import source
from dbops.runner.migrations import statements as sqlstatements


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_split_respects_quotes_dollar_quotes_and_comments() -> None:
    sql = (
        "-- leading; comment\n"
        "CREATE TABLE t (a text DEFAULT 'x;y', \"we;ird\" int);\n"
        "/* block ; /* nested ; */ */\n"
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "SELECT E'it\\'s;';\n"
        "-- trailing comment only\n"
    )
    parsed = sqlstatements.split_statements(sql)
    assert [s.index for s in parsed] == [1, 2, 3, 4]
    assert parsed[0].text.startswith("-- leading; comment\nCREATE TABLE t")
    assert parsed[0].line == 1
    assert parsed[1].text.startswith("/* block")
    assert "$body$ SELECT 1; $body$" in parsed[1].text
    assert parsed[2].text == "DO $$ BEGIN PERFORM 1; END $$"
    assert parsed[3].text == "SELECT E'it\\'s;'"
    assert parsed[2].line == 5


def test_statement_summary_is_one_line_without_comments() -> None:
    statement = sqlstatements.split_statements("-- hi\nALTER TABLE t\n  ADD COLUMN c int")[0]
    assert statement.summary() == "ALTER TABLE t ADD COLUMN c int"


def test_directory_source_follows_the_naming_convention(tmp_path: Path) -> None:
    write(tmp_path, {
        "0001_create_users.up.sql": "CREATE TABLE users (id int);",
        "0001_create_users.down.sql": "DROP TABLE users;",
        "0002_add_email.up.sql": "ALTER TABLE users ADD COLUMN email text;",
        "README.md": "ignored",
        "..data": "",
    })
    (tmp_path / "..2026_11_25").mkdir()
    migrations = source.load_directory(tmp_path)
    assert [m.label for m in migrations] == ["0001_create_users", "0002_add_email"]
    assert migrations[0].down is not None and migrations[1].down is None
    assert migrations[0].checksum == source.checksum_of("CREATE TABLE users (id int);")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.up.sql": "SELECT 1;", "0003_c.up.sql": "SELECT 1;"}, "gap in migration versions"),
        ({"0001_a.up.sql": "SELECT 1;", "001_b.up.sql": "SELECT 1;"}, "duplicate migration version"),
        ({"0001_a.up.sql": "SELECT 1;", "1_a.up.sql": "SELECT 2;"}, "duplicate migration version"),
        ({"0001-a.up.sql": "SELECT 1;"}, "naming convention"),
        ({"0001_a.sql": "SELECT 1;"}, "naming convention"),
        ({"0001_a.down.sql": "SELECT 1;"}, "no .up.sql"),
        ({"0001_a.up.sql": "SELECT 1;", "0001_b.down.sql": "SELECT 1;"}, "disagree"),
        ({"V1..1__a.sql": "SELECT 1;"}, "Flyway version '1..1' is not digits"),
        ({"V1.1__a.sql": "SELECT 1;", "V1_1__b.sql": "SELECT 1;"}, "duplicate migration version"),
        ({"V1__a.sql": "SELECT 1;", "V1.0__b.sql": "SELECT 1;"}, "duplicate migration version"),
        ({"V1__a.sql": "SELECT 1;", "V1.2__b.sql": "SELECT 1;"}, "gap in migration versions"),
        ({"0001_a.up.sql": "CREATE TABLE a (i int); COMMIT; CREATE TABLE b (i int);"}, "transaction control"),
    ],
)
def test_invalid_file_sets_are_rejected_with_a_clear_error(tmp_path: Path, files: dict[str, str], message: str) -> None:
    write(tmp_path, files)
    with pytest.raises(errors.InvalidSpecError, match=message):
        source.load_directory(tmp_path)


def test_an_enclosing_begin_commit_is_dropped() -> None:
    migration = source.make_migration("1", "wrapped", "BEGIN;\nCREATE TABLE a (i int);\nCOMMIT;\n", None)
    assert [s.summary() for s in migration.up.statements] == ["CREATE TABLE a (i int)"]


def test_no_transaction_directive_is_detected() -> None:
    migration = source.make_migration(
        "7", "index", "-- dbops:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);", "DROP INDEX i;"
    )
    assert migration.up.no_transaction
    assert migration.down is not None and not migration.down.no_transaction


def test_inline_list_round_trips_through_json(tmp_path: Path) -> None:
    items = [
        {"version": "0001", "name": "one", "up": "CREATE TABLE one (i int);", "down": "DROP TABLE one;"},
        {"version": "0002", "name": "two", "up": "CREATE TABLE two (i int);"},
    ]
    path = tmp_path / "inline.json"
    path.write_text(json.dumps(items))
    migrations = source.load_inline_file(path)
    assert [m.label for m in migrations] == ["0001_one", "0002_two"]
    assert json.loads(source.dump_inline(migrations))[0]["down"] == "DROP TABLE one;"
    assert sorted(source.render_file_set(migrations)) == ["0001_one.down.sql", "0001_one.up.sql", "0002_two.up.sql"]


def test_inline_yaml_with_unknown_keys_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "inline.yaml"
    path.write_text("- {version: '1', name: a, up: 'SELECT 1', sql: oops}\n")
    with pytest.raises(errors.InvalidSpecError, match="unknown keys"):
        source.load_inline_file(path)


def test_password_literals_are_masked_in_statement_summaries() -> None:
    statement = sqlstatements.split_statements("CREATE ROLE app LOGIN PASSWORD 'hunter2'")[0]
    assert "hunter2" not in statement.summary()
    assert statement.summary() == "CREATE ROLE app LOGIN PASSWORD '****'"


def test_a_mounted_configmap_directory_is_read_through_its_links(tmp_path: Path) -> None:
    """Kubernetes mounts ConfigMap keys as links into a hidden, timestamped directory."""
    data = tmp_path / "..2026_11_25_10_00_00.123"
    data.mkdir()
    write(data, {"0001_a.up.sql": "CREATE TABLE a (i int);", "0001_a.down.sql": "DROP TABLE a;"})
    (tmp_path / "..data").symlink_to(data.name)
    for name in ("0001_a.up.sql", "0001_a.down.sql"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    migrations = source.load_directory(tmp_path)
    assert [m.label for m in migrations] == ["0001_a"]
    assert migrations[0].down is not None and migrations[0].down.sql == "DROP TABLE a;"


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"README.md": "nothing here"})
    with pytest.raises(errors.InvalidSpecError, match="no migrations"):
        source.load_directory(tmp_path)


def test_other_tools_histories_load(tmp_path: Path) -> None:
    """golang-migrate names with dots, gaps (with allow_gaps), comment-only files and the other tools'
    no-transaction directives; Flyway V/U names and its executeInTransaction=false script configuration."""
    golang = tmp_path / "golang"
    write(golang, {
        "000001_init_v6.0.up.sql": "CREATE TABLE a (i int);", "000001_init_v6.0.down.sql": "DROP TABLE a;",
        "000003_placeholder.up.sql": "-- superseded by 000004\n",
        "000004_idx.up.sql": "-- +goose NO TRANSACTION\nCREATE INDEX CONCURRENTLY i ON a (i);",
        "000005_idx2.up.sql": "-- atlas:txmode none\nCREATE INDEX CONCURRENTLY j ON a (i);",
        "000006_idx3.up.sql": "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY k ON a (i);",
    })
    with pytest.raises(errors.InvalidSpecError, match="allow-gaps"):
        source.load_directory(golang)
    loaded = source.load_directory(golang, allow_gaps=True)
    assert [m.label for m in loaded] == ["000001_init_v6.0", "000003_placeholder", "000004_idx", "000005_idx2",
                                         "000006_idx3"]
    assert loaded[1].up.statements == ()
    assert [m.up.no_transaction for m in loaded] == [False, False, True, True, True]
    assert loaded[0].up.file == "000001_init_v6.0.up.sql"
    flyway = tmp_path / "flyway"
    write(flyway, {"V1__create.sql": "CREATE TABLE a (i int);", "U1__create.sql": "DROP TABLE a;",
                   "V2__index.sql": "CREATE INDEX CONCURRENTLY i ON a (i);",
                   "V2__index.sql.conf": "executeInTransaction=false\n"})
    loaded = source.load_directory(flyway)
    assert [(m.label, m.up.no_transaction, m.down is not None) for m in loaded] == [
        ("1_create", False, True), ("2_index", True, False)]


def test_crlf_only_changes_keep_the_checksum() -> None:
    unix = source.make_migration("1", "a", "CREATE TABLE a (i int);\nCREATE TABLE b (i int);\n", None)
    windows = source.make_migration("1", "a", "CREATE TABLE a (i int);\r\nCREATE TABLE b (i int);\r\n", None)
    assert unix.checksum == windows.checksum
    assert windows.raw_checksum != windows.checksum  # a history recorded from the raw CRLF text still matches
