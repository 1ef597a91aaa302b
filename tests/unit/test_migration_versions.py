"""Flyway-style versions end to end in pure code: dotted/underscored versions ordered as tuples, gaps between
them, U undo files as downs, R__ repeatables after the versioned ones, and plans over a history of them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbops import errors
from dbops.api import versions
from dbops.runner.migrations import history, plan, source


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize(("smaller", "larger"), [
    ("1", "1.1"), ("1.1", "1.2"), ("1.2", "1.10"), ("1.10", "2"), ("9", "10"), ("0001", "2"), ("1_9", "1.10"),
    ("2", "2.0.1"), ("0", "1"),
])
def test_versions_order_as_integer_tuples_not_strings_or_numbers(smaller: str, larger: str) -> None:
    assert versions.key(smaller) < versions.key(larger)


@pytest.mark.parametrize(("one", "same"), [("1", "1.0"), ("1.2", "1_2"), ("0001", "1"), ("1.0.0", "1"), ("0", "0.0")])
def test_equal_versions_as_flyway_compares_them(one: str, same: str) -> None:
    assert versions.key(one) == versions.key(same)


@pytest.mark.parametrize(("previous", "current", "follows"), [
    ("1", "2", True), ("1", "1.1", True), ("1.1", "1.2", True), ("1.1", "2", True), ("1.2.3", "1.3", True),
    ("1", "3", False), ("1.1", "1.3", False), ("1.1", "3", False), ("1", "1.2", False), ("0", "1", True),
])
def test_gaps_between_dotted_versions(previous: str, current: str, follows: bool) -> None:
    assert versions.follows(versions.key(previous), versions.key(current)) is follows


def flyway_project(directory: Path) -> Path:
    """Shaped like a real Flyway project: dotted and underscored versions, an undo, repeatables, a gap."""
    return write(directory, {
        "V1__create_accounts.sql": "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text);",
        "U1__create_accounts.sql": "DROP TABLE accounts;",
        "V1.1__add_name.sql": "ALTER TABLE accounts ADD COLUMN name text;",
        "V1_2__seed.sql": "INSERT INTO accounts (email) VALUES ('a@example.org');",
        "V1.10__comment_only.sql": "-- kept: the change moved to V2\n",
        "V2__orders.sql": "CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts);",
        "V4__index.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_account ON orders (account_id);",
        "V4__index.sql.conf": "executeInTransaction=false\n",
        "R__views.sql": "CREATE OR REPLACE VIEW account_orders AS SELECT a.id, count(o.id) FROM accounts a "
                        "LEFT JOIN orders o ON o.account_id = a.id GROUP BY a.id;",
        "R__a_functions.sql": "CREATE OR REPLACE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    })


def test_a_flyway_project_loads_in_version_order_with_repeatables_last(tmp_path: Path) -> None:
    src = flyway_project(tmp_path / "db")
    with pytest.raises(errors.InvalidSpecError, match=r"1\.2_seed is followed by 1\.10_comment_only "
                                                      r"\(expected version 1\.3"):
        source.load_directory(src)
    loaded = source.load_directory(src, allow_gaps=True)
    assert [m.label for m in loaded] == ["1_create_accounts", "1.1_add_name", "1.2_seed", "1.10_comment_only",
                                         "2_orders", "4_index", "R__a_functions", "R__views"]
    assert loaded[0].down is not None and loaded[0].down.sql == "DROP TABLE accounts;"
    assert loaded[5].up.no_transaction and loaded[3].up.statements == ()
    assert [m.repeatable for m in loaded].count(True) == 2
    assert loaded[-1].up.file == "R__views.sql"


def row(version: str, checksum: str, kind: str = "migration", name: str = "x") -> history.HistoryRow:
    return history.HistoryRow(version, name, checksum, datetime.now(UTC), 1, "me", True, kind)


def test_plans_over_dotted_versions_and_changed_repeatables(tmp_path: Path) -> None:
    loaded = source.load_directory(flyway_project(tmp_path / "db"), allow_gaps=True)
    by_label = {m.label: m for m in loaded}
    fresh = plan.build_plan(loaded, [], history_table="h")
    assert fresh.pending == ["1", "1.1", "1.2", "1.10", "2", "4", "R__a_functions", "R__views"]
    rows = [row(m.version, m.checksum) for m in loaded[:4]]
    repeatable_rows = [row("R__views", by_label["R__views"].checksum, "repeatable", "views"),
                       row("R__a_functions", "changed", "repeatable", "a_functions")]
    later = plan.build_plan(loaded, rows, history_table="h", repeatable_rows=repeatable_rows)
    assert later.pending == ["2", "4", "R__a_functions"] and later.current_version == "1.10"
    up_to = plan.build_plan(loaded, rows, history_table="h", target_version="1_10",
                            repeatable_rows=repeatable_rows)
    assert up_to.pending == ["R__a_functions"]
    down = plan.build_plan(loaded, rows[:1], history_table="h", target_version="0", allow_down=True,
                           repeatable_rows=repeatable_rows)
    assert down.direction == "down" and down.pending == ["1"]
    with pytest.raises(errors.InvalidSpecError, match="not in the source"):
        plan.build_plan(loaded, rows, history_table="h", target_version="3")
    with pytest.raises(errors.InvalidSpecError, match=r"target version '1\.x' is not a version"):
        plan.build_plan(loaded, rows, history_table="h", target_version="1.x")
    baseline = plan.build_plan(loaded, [], history_table="h", baseline_version="1.2")
    assert baseline.pending == ["1.10", "2", "4", "R__a_functions", "R__views"]


def test_an_edited_dotted_migration_is_drift_but_an_edited_repeatable_is_not(tmp_path: Path) -> None:
    loaded = source.load_directory(flyway_project(tmp_path / "db"), allow_gaps=True)
    rows = [row(m.version, m.checksum) for m in loaded[:3]]
    rows[1] = row("1.1", "edited")
    with pytest.raises(errors.MigrationError, match=r"1\.1_add_name was edited"):
        plan.build_plan(loaded, rows, history_table="h")


def test_flyway_checksum_follows_flyways_line_by_line_crc32() -> None:
    """Flyway's ChecksumCalculator: CRC-32 over each line's UTF-8 bytes, terminators dropped, a BOM stripped from
    the first line only, stored as a signed 32-bit integer."""
    import zlib

    from dbops.runner.migrations import flyway

    assert flyway.checksum("SELECT 1;") == zlib.crc32(b"SELECT 1;")  # one line: plain CRC-32
    joined = zlib.crc32(b"ab")
    signed = joined - (1 << 32) if joined >= (1 << 31) else joined
    for text in ("a\nb", "a\r\nb", "a\rb", "a\nb\n", "a\n\n\nb\r\n", "\ufeffa\nb"):
        assert flyway.checksum(text) == signed, text
    assert flyway.checksum("a\n\ufeffb") != signed  # a BOM further in is content
    assert flyway.checksum("") == 0 and flyway.checksum("\n") == 0
    assert -(1 << 31) <= flyway.checksum("CREATE TABLE accounts (id bigserial PRIMARY KEY);\n" * 50) < (1 << 31)


_NAMES = st.from_regex(source.NAME, fullmatch=True).filter(lambda name: len(name) <= 40)
_VERSION_SETS = st.lists(st.from_regex(versions.VERSION, fullmatch=True).filter(versions.is_version),
                         min_size=1, max_size=6, unique_by=versions.key)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_VERSION_SETS, st.data())
def test_rendered_files_load_back_with_the_same_versions(tmp_path: Path, chosen: list[str], data: st.DataObject
                                                         ) -> None:
    """Versions from the shared grammar (dots, '_', leading zeros) → render_file_set → the files a ConfigMap
    mounts → load_directory: the same versions, names and scripts come back."""
    migrations = [source.make_migration(version, data.draw(_NAMES), f"SELECT {index};",
                                        data.draw(st.sampled_from([None, f"SELECT -{index};"])))
                  for index, version in enumerate(chosen)]
    files = source.render_file_set(migrations)
    assert all(versions.SOURCE_FILE.match(name) for name in files), sorted(files)  # the controller keeps them all
    directory = tmp_path / f"set-{len(list(tmp_path.iterdir()))}"
    loaded = source.load_directory(write(directory, files), allow_gaps=True)
    ordered = sorted(migrations, key=lambda m: m.number)
    assert [(m.version, m.name, m.up.sql) for m in loaded] == [(m.version, m.name, m.up.sql) for m in ordered]
    assert [m.down.sql if m.down else None for m in loaded] == [m.down.sql if m.down else None for m in ordered]


def test_a_dotted_version_renders_as_a_file_the_loader_reads() -> None:
    """The regression: 1.2 was written as 1.2_x.up.sql, which the loader refused."""
    rendered = source.render_file_set([source.make_migration("1_2", "x", "SELECT 1;", "SELECT 2;")])
    assert sorted(rendered) == ["1.2_x.down.sql", "1.2_x.up.sql"]
    assert source._parse_file_name("1.2_x.up.sql") == ("1.2", "x", "up")
    assert source._parse_file_name("0006_v6.0.up.sql") == ("0006", "v6.0", "up")  # golang-migrate: dots in the name


def test_a_gap_after_version_0_is_named_not_a_crash() -> None:
    """Found by the admission fuzz: inline versions 0 and 1.1 (0 has no parts to bump) raised IndexError."""
    assert versions.sequence_problem([("1.1", "1.1_b"), ("0", "0_a")], allow_gaps=False) == (
        "gap in migration versions: 0_a is followed by 1.1_b (expected version 1; --allow-gaps / spec.allowGaps "
        "accepts gaps)")
    assert versions.sequence_problem([("0", "0_a"), ("1", "1_b"), ("1.1", "1.1_c")], allow_gaps=False) is None
