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


GOOSE_USERS = ("-- users and their emails\n"
               "-- +goose Up\n"
               "CREATE TABLE users (id bigserial PRIMARY KEY, email text);\n"
               "-- +goose StatementBegin\n"
               "CREATE FUNCTION users_email_lower() RETURNS trigger LANGUAGE plpgsql AS $$\n"
               "BEGIN\n  NEW.email := lower(NEW.email);\n  RETURN NEW;\nEND;\n$$;\n"
               "-- +goose StatementEnd\n"
               "\n"
               "-- +goose Down\n"
               "DROP FUNCTION users_email_lower();\n"
               "DROP TABLE users;\n")


def test_a_goose_file_is_split_at_its_down_marker() -> None:
    """Regression: the Down section of a goose file ran as part of its up (created, then dropped users)."""
    migration = source.make_migration("1", "users", GOOSE_USERS, None, up_file="00001_users.sql")
    assert [s.summary()[:21] for s in migration.up.statements] == ["CREATE TABLE users (i",
                                                                    "CREATE FUNCTION users"]
    # A statement's line is where its text begins, leading comments included; the down's are the file's too.
    assert [s.line for s in migration.up.statements] == [1, 4]
    assert migration.down is not None and migration.down.file == "00001_users.sql"
    assert [(s.line, s.summary()) for s in migration.down.statements] == [
        (13, "DROP FUNCTION users_email_lower()"), (15, "DROP TABLE users")]
    assert "DROP" not in migration.up.sql
    assert not migration.up.no_transaction and not migration.down.no_transaction


def test_goose_no_transaction_covers_both_sections_and_dbmate_has_one_per_section() -> None:
    goose = source.make_migration("2", "idx", "-- +goose NO TRANSACTION\n-- +goose Up\n"
                                  "CREATE INDEX CONCURRENTLY users_email ON users (email);\n"
                                  "-- +goose Down\nDROP INDEX CONCURRENTLY users_email;\n", None)
    assert goose.up.no_transaction and goose.down is not None and goose.down.no_transaction
    assert [s.summary() for s in goose.up.statements] == ["CREATE INDEX CONCURRENTLY users_email ON users (email)"]
    dbmate = source.make_migration("3", "idx", "-- migrate:up transaction:false\n"
                                   "CREATE INDEX CONCURRENTLY a_i ON a (i);\n\n"
                                   "-- migrate:down\nDROP INDEX a_i;\n", None)
    assert dbmate.up.no_transaction and dbmate.down is not None and not dbmate.down.no_transaction
    both = source.make_migration("4", "idx", "-- migrate:up\nCREATE TABLE b (i int);\n"
                                 "-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY b_i;\n", None)
    assert not both.up.no_transaction and both.down is not None and both.down.no_transaction


def test_marked_files_edge_cases() -> None:
    # An up section of comments only (the change was reverted upstream): a recorded no-op with a down.
    noop = source.make_migration("5", "noop", "-- +goose Up\n-- nothing any more\n-- +goose Down\nSELECT 1;\n", None)
    assert noop.up.statements == () and noop.down is not None and len(noop.down.statements) == 1
    # Only a Down marker: what precedes it is the up.
    only_down = source.make_migration("6", "x", "CREATE TABLE x (i int);\n-- migrate:down\nDROP TABLE x;\n", None)
    assert [s.summary() for s in only_down.up.statements] == ["CREATE TABLE x (i int)"]
    # The checksum is the up section's: editing the down section is no drift; editing the up is.
    edited_down = source.make_migration("1", "users",
                                        GOOSE_USERS.replace("DROP TABLE users;", "DROP TABLE users CASCADE;"), None)
    original = source.make_migration("1", "users", GOOSE_USERS, None)
    assert edited_down.checksum == original.checksum
    assert source.make_migration("1", "users", GOOSE_USERS.replace("email text", "email citext"), None).checksum \
        != original.checksum
    with pytest.raises(errors.InvalidSpecError, match=r"SQL before the '-- \+goose Up' marker on line 2"):
        source.make_migration("7", "x", "CREATE TABLE early (i int);\n-- +goose Up\nSELECT 1;\n", None)
    with pytest.raises(errors.InvalidSpecError, match="second '-- migrate:down' marker on line 5"):
        source.make_migration("7", "x", "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n-- migrate:down\n", None)
    with pytest.raises(errors.InvalidSpecError, match=r"7_x: 0007_x.up.sql has a down section and there is also "
                                                      r"a down script \(0007_x.down.sql\)"):
        source.make_migration("7", "x", "-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n", "SELECT 3;",
                              up_file="0007_x.up.sql", down_file="0007_x.down.sql")
    # A marker word that merely starts the same way is no marker.
    assert source.make_migration("8", "x", "-- migrate:upgrade notes\nSELECT 1;\n", None).down is None


def test_goose_and_dbmate_single_file_names_load(tmp_path: Path) -> None:
    """goose's 00001_name.sql and dbmate's 20240101120000_name.sql (with their markers) load as up + down;
    a NNNN_name.sql without a marker is still refused (it is not a known format)."""
    goose = write(tmp_path / "goose", {
        "00001_users.sql": GOOSE_USERS,
        "00002_email_idx.sql": ("-- +goose Up\n-- +goose NO TRANSACTION\n"
                                "CREATE INDEX CONCURRENTLY users_email ON users (email);\n\n"
                                "-- +goose Down\nDROP INDEX CONCURRENTLY users_email;\n"),
        "00003_names.up.sql": "-- +goose Up\nALTER TABLE users ADD COLUMN name text;\n-- +goose Down\n"
                              "ALTER TABLE users DROP COLUMN name;\n",
    })
    loaded = source.load_directory(goose)
    assert [(m.label, len(m.up.statements), m.down is not None and len(m.down.statements), m.up.no_transaction)
            for m in loaded] == [("00001_users", 2, 2, False), ("00002_email_idx", 1, 1, True),
                                 ("00003_names", 1, 1, False)]
    dbmate = write(tmp_path / "dbmate", {
        "20240101120000_accounts.sql": "-- migrate:up\nCREATE TABLE accounts (id int);\n-- migrate:down\n"
                                       "DROP TABLE accounts;\n",
        "20240102090000_accounts_idx.sql": "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY a_id ON "
                                           "accounts (id);\n-- migrate:down\nDROP INDEX a_id;\n",
    })
    assert [m.version for m in source.load_directory(dbmate, allow_gaps=True)] == ["20240101120000",
                                                                                    "20240102090000"]
    plain = write(tmp_path / "plain", {"0001_users.sql": "CREATE TABLE users (id int);"})
    with pytest.raises(errors.InvalidSpecError, match=r"0001_users\.sql' does not follow the naming convention"):
        source.load_directory(plain)
