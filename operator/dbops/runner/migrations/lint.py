"""Linting migration SQL with squawk (``squawk --reporter json``): findings, severity and destructive rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from dbops import errors
from dbops.api import versions
from dbops.runner.migrations import plan
from dbops.runner.migrations import statements as sqlstatements

# dbops sets lock_timeout and statement_timeout itself and runs each migration in a transaction.
DEFAULT_EXCLUDED_RULES = ("require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts",
                          "prefer-bigint-over-int", "prefer-identity", "prefer-text-field",
                          "prefer-timestamptz", "prefer-bigint-over-smallint")
DESTRUCTIVE_RULES = frozenset({"ban-drop-column", "ban-drop-table", "ban-drop-database", "changing-column-type",
                               "ban-truncate-cascade", "renaming-column", "renaming-table"})
SEVERITIES = ("none", "warning", "error")
_RANK = {"warning": 1, "error": 2}
# dbops's own rule: a statement PostgreSQL refuses inside a transaction, in a file run inside one. It fails
# whatever lint.failOn says (and with lint off), at plan time, before any migration of the plan runs.
NEEDS_NO_TRANSACTION = "dbops-needs-no-transaction"
BLOCKING_RULES = frozenset({NEEDS_NO_TRANSACTION})
_OUTSIDE_TRANSACTION_ONLY = re.compile(
    r"^(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\b.*\bCONCURRENTLY"
    r"|ALTER\s+TABLE\b.*\bDETACH\s+PARTITION\b.*\bCONCURRENTLY|VACUUM\b|(?:CREATE|DROP)\s+DATABASE\b"
    r"|(?:CREATE|DROP)\s+TABLESPACE\b|ALTER\s+SYSTEM\b)",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class LintFinding:
    """One squawk finding, attributed to a migration version."""

    version: str
    rule: str
    level: str
    line: int
    message: str
    file: str = ""

    @property
    def destructive(self) -> bool:
        """True for rules about dropping or rewriting data or breaking clients."""
        return self.rule in DESTRUCTIVE_RULES

    def as_result(self) -> dict[str, Any]:
        """camelCase form for the result JSON."""
        result: dict[str, Any] = {"version": self.version, "rule": self.rule, "level": self.level,
                                  "line": self.line, "message": self.message, "destructive": self.destructive}
        if self.file:
            result["file"] = self.file
        return result


def transaction_findings(migration_plan: plan.Plan) -> list[LintFinding]:
    """Statements that cannot run in a transaction, in steps that run in one (dbops's own check, no squawk)."""
    findings = []
    for step in migration_plan.steps:
        if step.script.no_transaction:
            continue
        for statement in step.script.statements:
            text = sqlstatements.strip_comments(statement.text)
            if _OUTSIDE_TRANSACTION_ONLY.match(text):
                findings.append(LintFinding(
                    version=step.migration.version, rule=NEEDS_NO_TRANSACTION, level="error", line=statement.line,
                    file=_file_of(step),
                    message=f"{statement.summary(60)} cannot run inside a transaction, and {step.migration.label} "
                            f"({step.direction}) runs in one: put the line '-- dbops:no-transaction' in the file",
                ))
    return findings


def find_squawk() -> str | None:
    """squawk on PATH, next to this Python (a venv's bin/) or from the squawk-cli package; None when absent."""
    found = shutil.which("squawk")
    if found:
        return found
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    try:
        dist = distribution("squawk-cli")
    except PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == "squawk":
            located = Path(str(dist.locate_file(entry))).resolve()
            if located.is_file():
                return str(located)
    return None


def lint_plan(migration_plan: plan.Plan, *, pg_version: int | None = None,
              excluded_rules: tuple[str, ...] = DEFAULT_EXCLUDED_RULES) -> list[LintFinding]:
    """Run squawk over every step's SQL; raise ConfigurationError when squawk is unavailable."""
    return LintRun(migration_plan, pg_version=pg_version, excluded_rules=excluded_rules).findings()


class LintRun:
    """squawk started over every step's SQL, one process per transaction mode; ``findings()`` waits for it.

    Started as soon as the plan is known, so the read-only work before the first migration (the size and row
    count snapshots) runs while squawk does (P6); ``findings()`` must still be called before anything changes."""

    def __init__(self, migration_plan: plan.Plan, *, pg_version: int | None = None,
                 excluded_rules: tuple[str, ...] = DEFAULT_EXCLUDED_RULES) -> None:
        self._runs: list[tuple[subprocess.Popen[str], dict[str, plan.Step]]] = []
        self._copies: tempfile.TemporaryDirectory[str] | None = None
        if not migration_plan.steps:
            return
        binary = find_squawk()
        if binary is None:
            raise errors.ConfigurationError(
                f"squawk is not installed (looked on PATH, in {Path(sys.executable).parent} and in the squawk-cli "
                "package; pip install squawk-cli), or disable lint with --no-lint / spec.lint.enabled: false"
            )
        try:
            for in_transaction in (True, False):
                files = {self._lint_file(step): step for step in migration_plan.steps
                         if step.script.no_transaction != in_transaction}
                if files:
                    command = _squawk_command(binary, in_transaction, pg_version, excluded_rules)
                    self._runs.append((subprocess.Popen([*command, *files], stdout=subprocess.PIPE,
                                                        stderr=subprocess.PIPE, text=True), files))
        except BaseException:
            self.close()
            raise

    def findings(self) -> list[LintFinding]:
        """Wait for squawk and return its findings by version and line."""
        try:
            found: list[LintFinding] = []
            for process, files in self._runs:
                found += _read_report(process, files)
            return sorted(found, key=lambda f: (version_order(f.version), f.line, f.rule))
        finally:
            self.close()

    def close(self) -> None:
        """Stop squawk if it still runs and remove the copies (idempotent)."""
        for process, _ in self._runs:
            if process.poll() is None:
                process.kill()
            process.communicate()
        self._runs = []
        if self._copies is not None:
            self._copies.cleanup()
            self._copies = None

    def _lint_file(self, step: plan.Step) -> str:
        if _is_source_file(step):
            return step.script.path
        if self._copies is None:
            self._copies = tempfile.TemporaryDirectory(prefix="dbops-lint-")
        return _lint_file(step, Path(self._copies.name))


def _is_source_file(step: plan.Step) -> bool:
    """True when the step's source file holds exactly the SQL that runs."""
    script = step.script
    if not script.path:
        return False
    try:
        return Path(script.path).read_bytes().decode("utf-8") == script.sql
    except (OSError, UnicodeDecodeError):
        return False


def _lint_file(step: plan.Step, directory: Path) -> str:
    """The file squawk reads for a step: the source file itself when it holds exactly the SQL that runs (P6:
    creating a copy of each file cost more than squawk), otherwise a copy written into ``directory``."""
    if _is_source_file(step):
        return step.script.path
    path = directory / f"{step.migration.label}.{step.direction}.sql"
    path.write_text(step.script.sql, encoding="utf-8")
    return str(path)


def fails(findings: list[LintFinding], fail_on: str) -> list[LintFinding]:
    """The findings at or above the ``fail_on`` severity (``none`` never fails)."""
    if fail_on not in SEVERITIES:
        raise errors.InvalidSpecError(f"lint failOn must be one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    blocking = [f for f in findings if f.rule in BLOCKING_RULES]
    if fail_on == "none":
        return blocking
    return blocking + [f for f in findings if f.rule not in BLOCKING_RULES and _RANK.get(f.level, 2) >= _RANK[fail_on]]


def _file_of(step: plan.Step) -> str:
    return step.script.file or f"{step.migration.label}.{step.direction}.sql"


def _squawk_command(binary: str, in_transaction: bool, pg_version: int | None,
                    excluded_rules: tuple[str, ...]) -> list[str]:
    command = [binary, "--reporter", "json"]
    if in_transaction:
        command.append("--assume-in-transaction")
    if pg_version:
        command.append(f"--pg-version={pg_version // 10000}.0")
    if excluded_rules:
        command.append(f"--exclude={','.join(excluded_rules)}")
    return command


def _read_report(process: subprocess.Popen[str], files: dict[str, plan.Step]) -> list[LintFinding]:
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if not stdout.strip() and process.returncode == 0:
        return []
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        raise errors.ConfigurationError(
            f"squawk failed (exit {process.returncode}): {(stderr or stdout).strip()[:300]}"
        ) from None
    findings = []
    for item in report:
        step = files.get(str(item.get("file")))
        findings.append(LintFinding(
            version=step.migration.version if step else "?",
            file=_file_of(step) if step else "",
            rule=str(item.get("rule_name") or "syntax-error"),
            level=str(item.get("level", "error")).lower(),
            line=int(item.get("line", 0)) + 1,
            message=str(item.get("message", "")),
        ))
    return findings


def version_order(version: str) -> tuple[int, tuple[int, ...], str]:
    """Findings by version (1 < 1.1 < 2), then repeatables (``R__…``) and unknown ones by name."""
    if versions.is_version(version):
        return (0, versions.key(version), "")
    return (1, (), version)
