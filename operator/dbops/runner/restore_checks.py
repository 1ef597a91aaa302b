"""Checks after a restore: row counts against the manifest and the user's SQL checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import psycopg

from dbops import errors
from dbops.api.common import SqlCheck
from dbops.runner import backup_scope, dbverify


@dataclasses.dataclass
class RowCountReport:
    """Per-table row counts of a database compared with a manifest."""

    tables_compared: int = 0
    mismatches: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every compared table matched."""
        return not self.mismatches

    def as_result(self) -> dict[str, Any]:
        """The result-JSON shape ``{passed, tablesCompared, mismatches}``."""
        return {"passed": self.passed, "tablesCompared": self.tables_compared, "mismatches": self.mismatches}


def compare_row_counts(conn: psycopg.Connection[Any], expected: dict[str, int], *, at_least: bool = False
                       ) -> RowCountReport:
    """Count rows of each table in ``expected`` and list the differences (with ``at_least``, only shortfalls)."""
    report = RowCountReport()
    for qualified, rows in sorted(expected.items()):
        schema, name = qualified.split(".", 1)
        try:
            actual = backup_scope.count_rows(conn, [(schema, name)])[qualified]
        except psycopg.errors.UndefinedTable:
            report.mismatches.append(f"{qualified}: missing (expected {rows} rows)")
            continue
        report.tables_compared += 1
        if actual < rows or (actual != rows and not at_least):
            report.mismatches.append(f"{qualified}: {actual} rows, expected {'at least ' if at_least else ''}{rows}")
    return report


def load_checks(checks_json: str | None = None, checks_file: str | None = None) -> tuple[SqlCheck, ...]:
    """SQL checks from a JSON list of ``{name, sql, expect}`` and/or a JSON/YAML file of one."""
    checks: tuple[SqlCheck, ...] = ()
    if checks_json:
        try:
            document = json.loads(checks_json)
        except ValueError as error:
            raise errors.InvalidSpecError(f"--checks-json is not valid JSON: {error}") from error
        checks += dbverify.load_checks(document, "--checks-json")
    if checks_file:
        checks += dbverify.load_checks_file(Path(checks_file))
    names = [check.name for check in checks]
    if len(set(names)) != len(names):
        raise errors.InvalidSpecError(f"check names must be unique: {', '.join(names)}")
    return checks


def run_checks(conn: psycopg.Connection[Any], checks: tuple[SqlCheck, ...]) -> list[dbverify.CheckResult]:
    """Run SQL checks with expectations (read-only, under a statement timeout) against a database."""
    return dbverify.verify(conn, dbverify.VerifyConfig(builtins=(), checks=checks))


