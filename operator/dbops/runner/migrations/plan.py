"""The migration plan: which versions run in which direction, refused on drift, with a stable hash."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from dbops import errors
from dbops.api import versions
from dbops.runner.migrations import history, source
from dbops.runner.migrations import statements as sqlstatements

_DESTRUCTIVE = (
    ("drop table", re.compile(r"^DROP\s+TABLE\b", re.I)),
    ("drop schema", re.compile(r"^DROP\s+SCHEMA\b", re.I)),
    ("drop database", re.compile(r"^DROP\s+DATABASE\b", re.I)),
    ("drop materialized view", re.compile(r"^DROP\s+MATERIALIZED\s+VIEW\b", re.I)),
    ("drop type", re.compile(r"^DROP\s+(?:TYPE|DOMAIN)\b", re.I)),
    ("drop sequence", re.compile(r"^DROP\s+SEQUENCE\b", re.I)),
    ("truncate", re.compile(r"^TRUNCATE\b", re.I)),
    ("drop column", re.compile(r"^ALTER\s+TABLE\b.*\bDROP\s+(?:COLUMN\s+)?(?!CONSTRAINT\b|DEFAULT\b|NOT\b|"
                               r"IDENTITY\b|EXPRESSION\b)", re.I | re.S)),
    ("column type change", re.compile(r"^ALTER\s+TABLE\b.*\bALTER\s+(?:COLUMN\s+)?\S+\s+(?:SET\s+DATA\s+)?TYPE\b",
                                      re.I | re.S)),
)


@dataclass(frozen=True)
class DestructiveStatement:
    """A statement that drops or rewrites data."""

    version: str
    statement: int
    line: int
    kind: str

    def as_result(self) -> dict[str, Any]:
        """camelCase form for the result JSON."""
        return {"version": self.version, "statement": self.statement, "line": self.line, "kind": self.kind}


@dataclass(frozen=True)
class Step:
    """One migration to run in one direction."""

    migration: source.Migration
    direction: str

    @property
    def script(self) -> source.Script:
        """The script this step executes."""
        script = self.migration.up if self.direction == "up" else self.migration.down
        assert script is not None
        return script


@dataclass
class Plan:
    """What ``apply`` or ``down`` would do, and whether it is safe to."""

    direction: str
    steps: list[Step]
    current_version: str | None
    target_version: str | None
    history_table: str
    baseline_version: str | None = None
    retry_failed: list[str] = field(default_factory=list)
    lint: list[dict[str, Any]] = field(default_factory=list)
    source_hash: str = ""

    @property
    def pending(self) -> list[str]:
        """Versions in execution order."""
        return [step.migration.version for step in self.steps]

    @property
    def destructive_statements(self) -> list[DestructiveStatement]:
        """Statements that drop or rewrite data."""
        found = []
        for step in self.steps:
            for statement in step.script.statements:
                kind = classify_destructive(statement)
                if kind:
                    found.append(DestructiveStatement(step.migration.version, statement.index, statement.line, kind))
        return found

    @property
    def destructive(self) -> bool:
        """True when any step drops or rewrites data (or lint says so)."""
        return bool(self.destructive_statements) or any(f.get("destructive") for f in self.lint)

    @property
    def hash(self) -> str:
        """A stable hash of the steps (direction, versions, checksums of the SQL to run) and the target."""
        document = {
            "historyTable": self.history_table,
            "direction": self.direction,
            "baseline": self.baseline_version,
            "target": self.target_version,
            "steps": [
                [step.migration.version, step.migration.name, step.direction,
                 source.checksum_of(step.script.sql), step.script.no_transaction]
                for step in self.steps
            ],
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    def as_result(self) -> dict[str, Any]:
        """The ``plan`` object of the result JSON."""
        return {
            "hash": self.hash,
            "direction": self.direction,
            "pending": self.pending,
            "currentVersion": self.current_version,
            "targetVersion": self.target_version,
            "destructive": self.destructive,
            "destructiveStatements": [d.as_result() for d in self.destructive_statements],
            "lint": self.lint,
            "sourceHash": self.source_hash,
            **({"retryingFailed": self.retry_failed} if self.retry_failed else {}),
        }


def classify_destructive(statement: sqlstatements.Statement) -> str | None:
    """The kind of data loss a statement may cause (``drop table`` …), or None."""
    text = sqlstatements.strip_comments(statement.text)
    for kind, pattern in _DESTRUCTIVE:
        if pattern.search(text):
            return kind
    return None


def applied_rows(rows: list[history.HistoryRow]) -> list[history.HistoryRow]:
    """Rows of successfully applied versions."""
    return [row for row in rows if row.success]


def current_version(rows: list[history.HistoryRow]) -> str | None:
    """The highest successfully applied version, or None."""
    applied = applied_rows(rows)
    return applied[-1].version if applied else None


def check_drift(migrations: list[source.Migration], rows: list[history.HistoryRow]) -> None:
    """Refuse when an applied migration was edited, or an applied version vanished from the source."""
    migrations = source.versioned(migrations)
    by_number = {m.number: m for m in migrations}
    first = migrations[0].number if migrations else None
    for row in applied_rows(rows):
        migration = by_number.get(row.number)
        if migration is None:
            if first is not None and row.number > first:
                raise errors.MigrationError(
                    f"applied migration {row.version}_{row.name} is missing from the source; "
                    "refusing before any DDL (restore the file, or roll back with the previous source)",
                    reason="MigrationDrift",
                )
            continue
        if row.kind != "baseline" and row.checksum not in (migration.checksum, migration.raw_checksum):
            raise errors.MigrationError(
                f"migration {migration.label} was edited after it was applied (recorded sha256 "
                f"{row.checksum[:12]}…, source {migration.checksum[:12]}…); refusing before any DDL — "
                "restore the applied text and put the change in a new migration, or accept the edit with "
                f"`dbops migrate repair --version {migration.version} --reason '…'`",
                reason="MigrationDrift",
            )


def parse_version(value: str, what: str) -> versions.Key:
    """A target or baseline version's key; InvalidSpecError naming it when it is not a version."""
    if not versions.is_version(value):
        raise errors.InvalidSpecError(f"{what} {value!r} is not a version: digits, or digit runs joined by '.' "
                                      "or '_' (e.g. 7, 0001, 1.2), at most 32 characters")
    return versions.key(value)


def changed_repeatables(migrations: list[source.Migration],
                        rows: list[history.HistoryRow]) -> list[source.Migration]:
    """Repeatable migrations never applied, or whose text changed since (in name order)."""
    recorded = {row.version: row.checksum for row in rows if row.success}
    return [m for m in source.repeatables(migrations)
            if recorded.get(m.version) not in (m.checksum, m.raw_checksum)]


def build_plan(
    migrations: list[source.Migration],
    rows: list[history.HistoryRow],
    *,
    history_table: str,
    target_version: str | None = None,
    allow_down: bool = False,
    baseline_version: str | None = None,
    repeatable_rows: list[history.HistoryRow] | None = None,
) -> Plan:
    """Decide the steps from the source, the history and the target; raise MigrationError when unsafe.

    Repeatable migrations whose checksum changed run after the versioned ones (not when going down).
    """
    check_drift(migrations, rows)
    fingerprint = source.source_hash(migrations)
    repeatable_steps = [Step(m, "up") for m in changed_repeatables(migrations, repeatable_rows or [])]
    migrations = source.versioned(migrations)
    applied = {row.number for row in applied_rows(rows)}
    baseline = None
    if not applied and baseline_version:
        baseline_key = parse_version(baseline_version, "baseline version")
        baseline = baseline_version
        applied = {m.number for m in migrations if m.number <= baseline_key}
    current = max(applied) if applied else None
    current_label = _version_label(current, migrations, rows, baseline)
    target: versions.Key | None
    if target_version in (None, ""):
        target = migrations[-1].number if migrations else None
    else:
        assert target_version is not None
        target = parse_version(target_version, "target version")
        if target != () and target not in {m.number for m in migrations}:
            raise errors.InvalidSpecError(f"target version {target_version} is not in the source")
    target_label = None if target is None else _version_label(target, migrations, rows, None) or versions.text(target)

    if current is not None and target is not None and target < current:
        if not allow_down:
            raise errors.MigrationError(
                f"target version {target_label} is below the current version {current_label}; "
                "running down migrations needs allowDown (--allow-down or `dbops migrate down`)",
                reason="DownNotAllowed",
            )
        steps = []
        for migration in sorted(migrations, key=lambda m: m.number, reverse=True):
            if target < migration.number <= current and migration.number in applied:
                if migration.down is None:
                    raise errors.MigrationError(
                        f"migration {migration.label} has no down script; cannot go down to {target_label}",
                        reason="NoDownMigration",
                    )
                steps.append(Step(migration, "down"))
        return Plan("down", steps, current_label, target_label, history_table, baseline, source_hash=fingerprint)

    pending = [m for m in migrations if m.number not in applied and (target is None or m.number <= target)]
    if current is not None:
        late = [m for m in pending if m.number < current]
        if late:
            raise errors.MigrationError(
                f"migration {late[0].label} is pending but the database is already at {current_label}; "
                "versions must be applied in order (renumber it after the current version)",
                reason="OutOfOrder",
            )
    failed = [row.version for row in rows if not row.success and row.number in {m.number for m in pending}]
    steps = [Step(m, "up") for m in pending] + repeatable_steps
    return Plan("up" if steps else "none", steps, current_label, target_label,
                history_table, baseline, retry_failed=failed, source_hash=fingerprint)


def _version_label(
    number: versions.Key | None, migrations: list[source.Migration], rows: list[history.HistoryRow],
    baseline: str | None,
) -> str | None:
    if number is None:
        return None
    for migration in migrations:
        if migration.number == number:
            return migration.version
    for row in rows:
        if row.number == number:
            return row.version
    return baseline or versions.text(number)
