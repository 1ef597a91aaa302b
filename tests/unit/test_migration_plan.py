"""Migration plans: pending versions, drift refusal, baseline, down, destructive flags, stable hash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dbops import errors
from dbops.api.common import SqlCheck
from dbops.runner import dbverify
from dbops.runner.migrations import history, lint, plan, source


def migrations(count: int = 3) -> list[source.Migration]:
    return [
        source.make_migration(f"{n:04d}", f"m{n}", f"CREATE TABLE t{n} (i int);", f"DROP TABLE t{n};")
        for n in range(1, count + 1)
    ]


def row(migration: source.Migration, *, checksum: str | None = None, success: bool = True,
        kind: str = "migration") -> history.HistoryRow:
    return history.HistoryRow(migration.version, migration.name, checksum or migration.checksum,
                              datetime.now(UTC), 1, "me", success, kind)


def build(ms: list[source.Migration], rows: list[history.HistoryRow], **kwargs: object) -> plan.Plan:
    return plan.build_plan(ms, rows, history_table="public.dbops_migrations", **kwargs)  # type: ignore[arg-type]


def test_pending_are_the_unapplied_versions_in_order() -> None:
    ms = migrations()
    result = build(ms, [row(ms[0])])
    assert result.direction == "up"
    assert result.pending == ["0002", "0003"]
    assert result.current_version == "0001"


def test_edited_applied_migration_is_refused() -> None:
    ms = migrations()
    with pytest.raises(errors.MigrationError, match="edited after it was applied"):
        build(ms, [row(ms[0], checksum="0" * 64)])


def test_applied_version_missing_from_source_is_refused() -> None:
    ms = migrations()
    with pytest.raises(errors.MigrationError, match="missing from the source"):
        build([ms[0]], [row(ms[0]), row(ms[1])])


def test_baseline_marks_earlier_versions_as_applied() -> None:
    ms = migrations()
    result = build(ms, [], baseline_version="0002")
    assert result.pending == ["0003"]
    assert result.current_version == "0002"


def test_down_needs_allow_down_and_runs_in_reverse() -> None:
    ms = migrations()
    rows = [row(m) for m in ms]
    with pytest.raises(errors.MigrationError, match="allowDown"):
        build(ms, rows, target_version="0001")
    result = build(ms, rows, target_version="0001", allow_down=True)
    assert result.direction == "down"
    assert result.pending == ["0003", "0002"]
    assert result.destructive


def test_out_of_order_pending_version_is_refused() -> None:
    ms = migrations()
    with pytest.raises(errors.MigrationError, match="in order"):
        build(ms, [row(ms[0]), row(ms[2])])


def test_plan_hash_is_stable_and_changes_with_the_sql() -> None:
    ms = migrations()
    first = build(ms, []).hash
    assert first == build(migrations(), []).hash
    edited = [*ms[:2], source.make_migration("0003", "m3", "CREATE TABLE t3 (i bigint);", None)]
    assert build(edited, []).hash != first
    assert build(ms, [row(ms[0])]).hash != first


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("DROP TABLE users", "drop table"),
        ("ALTER TABLE users DROP COLUMN email", "drop column"),
        ("alter table users drop email", "drop column"),
        ("ALTER TABLE users ALTER COLUMN id TYPE bigint", "column type change"),
        ("ALTER TABLE users ALTER id SET DATA TYPE bigint", "column type change"),
        ("TRUNCATE users", "truncate"),
        ("ALTER TABLE users DROP CONSTRAINT users_pkey", None),
        ("ALTER TABLE users ALTER COLUMN id DROP NOT NULL", None),
        ("CREATE TABLE users (id int)", None),
    ],
)
def test_destructive_statements_are_classified(sql: str, kind: str | None) -> None:
    statement = source.make_migration("1", "x", sql, None).up.statements[0]
    assert plan.classify_destructive(statement) == kind


def test_squawk_finds_problems_and_flags_destructive_rules() -> None:
    ms = [source.make_migration("0001", "drop", "ALTER TABLE users DROP COLUMN email;", None)]
    findings = lint.lint_plan(build(ms, []))
    rules = {f.rule for f in findings}
    assert "ban-drop-column" in rules
    assert all(f.version == "0001" and f.line == 1 for f in findings)
    assert any(f.destructive for f in findings)
    assert lint.fails(findings, "warning")
    assert lint.fails(findings, "none") == []


def test_squawk_reads_the_source_files_in_place_and_a_copy_only_where_they_differ(tmp_path: Path) -> None:
    """P6: no copy per file (creating 200 files cost more than squawk); a file whose bytes are not the SQL
    that runs (CRLF, changed since it was read) is linted from a copy of that SQL, with the same findings."""
    (tmp_path / "0001_drop.up.sql").write_text("SELECT 1;\nALTER TABLE users DROP COLUMN email;\n")
    (tmp_path / "0002_crlf.up.sql").write_bytes(b"SELECT 1;\r\nALTER TABLE users DROP COLUMN name;\r\n")
    (tmp_path / "0003_edited.up.sql").write_text("SELECT 1;\nALTER TABLE users DROP COLUMN age;\n")
    (tmp_path / "0004_goose.up.sql").write_text("-- +goose Up\nSELECT 1;\n-- +goose Down\nDROP TABLE users;\n")
    ms = source.load_directory(tmp_path)
    (tmp_path / "0003_edited.up.sql").write_text("SELECT 1;\n")
    steps = build(ms, []).steps
    copies = tmp_path / "copies"
    copies.mkdir()
    assert [lint._lint_file(step, copies) for step in steps] == [
        str(tmp_path / "0001_drop.up.sql"), str(copies / "0002_crlf.up.sql"), str(copies / "0003_edited.up.sql"),
        str(copies / "0004_goose.up.sql")]  # a section of the file
    assert (copies / "0003_edited.up.sql").read_text() == ms[2].up.sql
    findings = lint.lint_plan(build(ms, []))
    assert [(f.version, f.rule, f.line, f.file) for f in findings if f.rule == "ban-drop-column"] == [
        ("0001", "ban-drop-column", 2, "0001_drop.up.sql"), ("0002", "ban-drop-column", 2, "0002_crlf.up.sql"),
        ("0003", "ban-drop-column", 2, "0003_edited.up.sql")]


def test_user_check_expectations() -> None:
    check = SqlCheck.model_validate({"name": "c", "sql": "SELECT", "expect": {"rows": 0}})
    assert dbverify.evaluate_expectation(check, []).passed
    assert not dbverify.evaluate_expectation(check, [(1,)]).passed
    bounded = SqlCheck.model_validate({"name": "c", "sql": "SELECT", "expect": {"min": 2, "max": 5}})
    assert dbverify.evaluate_expectation(bounded, [(3,)]).passed
    assert not dbverify.evaluate_expectation(bounded, [(6,)]).passed
    assert not dbverify.evaluate_expectation(bounded, []).passed
    equals = SqlCheck.model_validate({"name": "c", "sql": "SELECT", "expect": {"equals": "ok"}})
    assert dbverify.evaluate_expectation(equals, [("ok",)]).passed
    assert not dbverify.evaluate_expectation(equals, [("no",)]).passed


def test_row_counts_within_tolerance() -> None:
    assert dbverify.compare_row_counts({"a": 100}, {"a": 100, "b": 1}, 0).passed
    assert not dbverify.compare_row_counts({"a": 100}, {"a": 99}, 0).passed
    assert dbverify.compare_row_counts({"a": 100}, {"a": 99}, 1).passed


def test_an_unknown_squawk_rule_is_a_configuration_error() -> None:
    ms = [source.make_migration("0001", "a", "CREATE TABLE a (i int);", None)]
    with pytest.raises(errors.ConfigurationError, match="squawk failed"):
        lint.lint_plan(build(ms, []), excluded_rules=("no-such-rule",))


def test_source_hash_follows_every_script() -> None:
    ms = migrations()
    plain = build(ms, []).as_result()["sourceHash"]
    assert plain == source.source_hash(migrations())
    edited_down = [*ms[:2], source.make_migration("0003", "m3", "CREATE TABLE t3 (i int);", "DROP TABLE t3 CASCADE;")]
    assert source.source_hash(edited_down) != plain


def test_target_version_limits_up_and_down_needs_down_scripts() -> None:
    ms = migrations()
    assert build(ms, [], target_version="0002").pending == ["0001", "0002"]
    with pytest.raises(errors.InvalidSpecError, match="not in the source"):
        build(ms, [], target_version="0009")
    no_down = [source.make_migration("0001", "a", "CREATE TABLE a (i int);", None)]
    with pytest.raises(errors.MigrationError, match="no down script"):
        build(no_down, [row(no_down[0])], target_version="0", allow_down=True)
