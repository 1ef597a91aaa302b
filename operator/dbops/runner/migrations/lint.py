"""Linting migration SQL with squawk (``squawk --reporter json``): findings, severity and destructive rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbops import errors
from dbops.runner.migrations import plan

# dbops sets lock_timeout and statement_timeout itself and runs each migration in a transaction.
DEFAULT_EXCLUDED_RULES = ("require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts",
                          "prefer-bigint-over-int", "prefer-identity", "prefer-text-field",
                          "prefer-timestamptz", "prefer-bigint-over-smallint")
DESTRUCTIVE_RULES = frozenset({"ban-drop-column", "ban-drop-table", "ban-drop-database", "changing-column-type",
                               "ban-truncate-cascade", "renaming-column", "renaming-table"})
SEVERITIES = ("none", "warning", "error")
_RANK = {"warning": 1, "error": 2}


@dataclass(frozen=True)
class LintFinding:
    """One squawk finding, attributed to a migration version."""

    version: str
    rule: str
    level: str
    line: int
    message: str

    @property
    def destructive(self) -> bool:
        """True for rules about dropping or rewriting data or breaking clients."""
        return self.rule in DESTRUCTIVE_RULES

    def as_result(self) -> dict[str, Any]:
        """camelCase form for the result JSON."""
        return {"version": self.version, "rule": self.rule, "level": self.level, "line": self.line,
                "message": self.message, "destructive": self.destructive}


def lint_plan(migration_plan: plan.Plan, *, pg_version: int | None = None,
              excluded_rules: tuple[str, ...] = DEFAULT_EXCLUDED_RULES) -> list[LintFinding]:
    """Run squawk over every step's SQL; raise ConfigurationError when squawk is unavailable."""
    if not migration_plan.steps:
        return []
    binary = shutil.which("squawk")
    if binary is None:
        raise errors.ConfigurationError("squawk is not installed (pip install squawk-cli), or disable lint")
    findings: list[LintFinding] = []
    with tempfile.TemporaryDirectory(prefix="dbops-lint-") as directory:
        for in_transaction in (True, False):
            files: dict[str, str] = {}
            for step in migration_plan.steps:
                if step.script.no_transaction == in_transaction:
                    continue
                path = Path(directory) / f"{step.migration.label}.{step.direction}.sql"
                path.write_text(step.script.sql, encoding="utf-8")
                files[str(path)] = step.migration.version
            if files:
                findings += _run_squawk(binary, files, in_transaction, pg_version, excluded_rules)
    return sorted(findings, key=lambda f: (int(f.version), f.line, f.rule))


def fails(findings: list[LintFinding], fail_on: str) -> list[LintFinding]:
    """The findings at or above the ``fail_on`` severity (``none`` never fails)."""
    if fail_on not in SEVERITIES:
        raise errors.InvalidSpecError(f"lint failOn must be one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    if fail_on == "none":
        return []
    return [f for f in findings if _RANK.get(f.level, 2) >= _RANK[fail_on]]


def _run_squawk(binary: str, files: dict[str, str], in_transaction: bool, pg_version: int | None,
                excluded_rules: tuple[str, ...]) -> list[LintFinding]:
    command = [binary, "--reporter", "json"]
    if in_transaction:
        command.append("--assume-in-transaction")
    if pg_version:
        command.append(f"--pg-version={pg_version // 10000}.0")
    if excluded_rules:
        command.append(f"--exclude={','.join(excluded_rules)}")
    completed = subprocess.run([*command, *files], capture_output=True, text=True, timeout=120, check=False)
    if not completed.stdout.strip() and completed.returncode == 0:
        return []
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise errors.ConfigurationError(
            f"squawk failed (exit {completed.returncode}): {(completed.stderr or completed.stdout).strip()[:300]}"
        ) from None
    findings = []
    for item in report:
        version = files.get(str(item.get("file")), "?")
        findings.append(LintFinding(
            version=version,
            rule=str(item.get("rule_name") or "syntax-error"),
            level=str(item.get("level", "error")).lower(),
            line=int(item.get("line", 0)) + 1,
            message=str(item.get("message", "")),
        ))
    return findings
