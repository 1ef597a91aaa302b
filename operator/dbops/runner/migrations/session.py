"""One migration run end to end: lock, read state, plan, lint, approve, apply, verify."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from dbops import errors
from dbops.runner import dbverify, relation_sizes
from dbops.runner.migrations import adopt, history, lint, lock, plan, source, state
from dbops.runner.migrations.report import ApplyOptions, ApplyReport

if TYPE_CHECKING:  # imported where used: a plain `migrate apply` needs neither (P6 start-up)
    from dbops.runner import prechecks

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs besides the connection and the migrations."""

    table: history.HistoryTable = field(default_factory=lambda: history.HistoryTable.parse(history.DEFAULT_TABLE))
    baseline_version: str | None = None
    target_version: str | None = None
    allow_down: bool = False
    apply: ApplyOptions = field(default_factory=ApplyOptions)
    lock_wait_seconds: float = 60.0
    lint_enabled: bool = True
    lint_fail_on: str = "error"
    lint_excluded_rules: tuple[str, ...] = lint.DEFAULT_EXCLUDED_RULES
    expect_plan_hash: str | None = None
    prechecks: prechecks.PreCheckConfig | None = None
    verify: dbverify.VerifyConfig | None = None
    sizes_top: int = 0
    """Report this many table and index size changes (0: none)."""
    import_history: str | None = None
    """Import this tool's history (``history.OTHER_TOOLS``) into ours first, when theirs exists and ours is empty."""
    import_history_table: str | None = None
    """Their history table (default: the tool's)."""


@dataclass
class RunOutcome:
    """What a run found and did (also filled as far as it got when it fails)."""

    plan: plan.Plan | None = None
    report: ApplyReport | None = None
    previous_version: str | None = None
    current_version: str | None = None
    prechecks: list[prechecks.PreCheck] = field(default_factory=list)
    verification: list[dbverify.CheckResult] = field(default_factory=list)
    framework_history: dict[str, Any] | None = None
    sizes: dict[str, Any] | None = None
    imported: list[str] = field(default_factory=list)
    """Versions imported from another tool's history before planning (``RunConfig.import_history``)."""
    imported_from: dict[str, Any] | None = None
    """What that import recorded, in brief (``summary``): never cut by the result's 4 KiB cap as the list can be."""

    def as_result(self) -> dict[str, Any]:
        """Result JSON fields (camelCase)."""
        fields: dict[str, Any] = {}
        if self.plan is not None:
            fields["plan"] = self.plan.as_result()
        fields["previousVersion"] = self.previous_version
        fields["currentVersion"] = self.current_version
        if self.report is not None:
            fields["dryRun"] = self.report.dry_run
            fields["applied"] = [a.as_result() for a in self.report.applied]
            if self.report.skipped:
                fields["skippedInDryRun"] = self.report.skipped
            if self.report.sequences_not_restored:
                fields["sequencesNotRestored"] = self.report.sequences_not_restored
        if self.prechecks:
            fields["preChecks"] = [p.as_result() for p in self.prechecks]
        if self.verification:
            fields["verification"] = [v.as_result() for v in self.verification]
        if self.framework_history is not None:
            fields["frameworkHistory"] = self.framework_history
        if self.sizes is not None:
            fields["sizes"] = self.sizes
        if self.imported:
            fields["importedHistory"] = self.imported
        if self.imported_from is not None:
            fields["importedFrom"] = self.imported_from
        return fields


def import_first(connection: Connection, migrations: list[source.Migration], config: RunConfig,
                 into: adopt.Imported | None = None) -> list[str]:
    """Import another tool's history into ours (``config.import_history``) when theirs exists and ours has no
    applied row; the versions imported (none: nothing to do — already imported, or a database the other tool
    never ran on), and in ``into`` all it recorded (Flyway's repeatables too). A dirty or failed history of
    theirs is refused (``adopt``)."""
    tool = config.import_history
    if not tool:
        return []
    theirs = history.HistoryTable.parse(config.import_history_table or history.OTHER_TOOLS[tool])
    if not theirs.exists(connection) or any(row.success for row in config.table.rows(connection)):
        return []
    imported = adopt.import_history(connection, migrations, config.table, tool, str(theirs),
                                    wait_seconds=config.lock_wait_seconds)
    if into is not None:
        into.versions, into.repeatables = imported.versions, imported.repeatables
    return imported.versions


def summary(imported: adopt.Imported, config: RunConfig) -> dict[str, Any] | None:
    """``importedFrom`` of the result: the tool, its table, how many versions, the newest, the repeatables
    (a list, so the 4 KiB cap can shorten it); None when nothing was imported."""
    if not imported.versions and not imported.repeatables:
        return None
    tool = config.import_history or ""
    return {"from": tool, "table": str(config.import_history_table or history.OTHER_TOOLS.get(tool, "")),
            "count": len(imported.versions), "newestVersion": imported.versions[-1] if imported.versions else "",
            "repeatables": [{"name": name, "state": state} for name, state in imported.repeatables.items()]}


@contextlib.contextmanager
def imported_first(connection: Connection, migrations: list[source.Migration], config: RunConfig, *,
                   commit: bool, into: adopt.Imported | None = None) -> Iterator[list[str]]:
    """``import_first`` for a run: committed, or (a plan, a dry run) seen only inside a transaction rolled back
    when the block ends, so the plan is the one the apply will make after importing."""
    if commit or not config.import_history:
        yield import_first(connection, migrations, config, into)
        return
    with connection.transaction(force_rollback=True):
        yield import_first(connection, migrations, config, into)


def current_version(connection: Connection, config: RunConfig) -> str | None:
    """The newest applied version (None: none), read before planning so a refusal still says where it is."""
    return plan.current_version(config.table.rows(connection))


def make_plan(connection: Connection, migrations: list[source.Migration], config: RunConfig) -> plan.Plan:
    """Read the database and build the (linted) plan; raises when the run would be unsafe."""
    result, linting = _plan_linting(connection, migrations, config)
    _finish_lint(result, linting)
    return result


def _plan_linting(connection: Connection, migrations: list[source.Migration], config: RunConfig
                  ) -> tuple[plan.Plan, lint.LintRun | None]:
    """The plan, and squawk started over it (``_finish_lint`` waits for it and records the findings)."""
    database = state.read_state(connection, config.table)
    state.refuse_unadopted(database, config.baseline_version, config.table)
    result = plan.build_plan(
        migrations, database.rows, history_table=str(config.table), target_version=config.target_version,
        allow_down=config.allow_down, baseline_version=config.baseline_version,
        repeatable_rows=database.repeatable_rows,
    )
    linting = (lint.LintRun(result, pg_version=database.server_version, excluded_rules=config.lint_excluded_rules)
               if config.lint_enabled else None)
    return result, linting


def _finish_lint(result: plan.Plan, linting: lint.LintRun | None) -> None:
    findings = lint.transaction_findings(result)
    if linting is not None:
        findings += linting.findings()
    result.lint = [f.as_result() for f in sorted(findings, key=lambda f: (lint.version_order(f.version), f.line, f.rule))]


def lint_failure(migration_plan: plan.Plan, config: RunConfig) -> errors.MigrationError | None:
    """The LintFailed error when findings reach ``lint_fail_on`` (dbops's blocking rules always do)."""
    failing = lint.fails([_finding(f) for f in migration_plan.lint], config.lint_fail_on)
    if not failing:
        return None
    shown = "; ".join(f"{f.version} line {f.line} {f.rule}: {f.message}" for f in failing[:5])
    more = f" (and {len(failing) - 5} more)" if len(failing) > 5 else ""
    return errors.MigrationError(
        f"lint found {len(failing)} problems at or above {config.lint_fail_on}: {shown}{more}", reason="LintFailed",
    )


def run(connection: Connection, migrations: list[source.Migration], config: RunConfig,
        outcome: RunOutcome | None = None) -> RunOutcome:
    """Apply (or dry-run) the plan under the advisory lock, with optional pre-checks and verification."""
    outcome = outcome if outcome is not None else RunOutcome()
    details = adopt.Imported()
    lock.watch_client_connection(connection)
    if config.prechecks is not None:
        from dbops.runner import prechecks

        outcome.prechecks = prechecks.run_prechecks(connection, config.prechecks)
        prechecks.raise_on_failures(outcome.prechecks, config.prechecks.fail_on)
    with lock.advisory_lock(connection, str(config.table), config.lock_wait_seconds), \
            imported_first(connection, migrations, config, commit=not config.apply.dry_run, into=details) as imported, \
            contextlib.ExitStack() as sessions:
        outcome.imported, outcome.imported_from = imported, summary(details, config)
        # Known before planning, so a refusal (drift, lint …) still reports where the database is.
        outcome.previous_version = outcome.current_version = current_version(connection, config)
        outcome.plan, linting = _plan_linting(connection, migrations, config)
        outcome.previous_version = outcome.plan.current_version
        outcome.current_version = outcome.plan.current_version
        try:
            # Read-only, so it runs while squawk does (P6); nothing changes before the lint verdict below.
            before = _row_counts_before(connection, config)
            measure_sizes = bool(config.sizes_top) and not config.apply.dry_run
            # A second session measures half of the relations, before and after (opened while squawk runs).
            helper = sessions.enter_context(relation_sizes.second_session(connection)) if measure_sizes else None
            sizes_before = relation_sizes.snapshot(connection, helper) if measure_sizes else None
            from dbops.runner.migrations import apply  # while squawk runs too: ~10 ms of importing (P6)

            _finish_lint(outcome.plan, linting)
        finally:
            if linting is not None:
                linting.close()
        if config.expect_plan_hash and config.expect_plan_hash != outcome.plan.hash:
            raise errors.MigrationError(
                f"the plan changed: its hash is {outcome.plan.hash}, the approved hash is {config.expect_plan_hash}; "
                "review and approve the new plan", reason="PlanChanged",
            )
        failure = lint_failure(outcome.plan, config)
        if failure is not None:
            raise failure
        outcome.report = ApplyReport(dry_run=config.apply.dry_run)
        try:
            apply.execute_plan(connection, outcome.plan, config.table, config.apply, baseline=migrations,
                               report=outcome.report)
        finally:
            if not config.apply.dry_run:
                outcome.current_version = _version_after(outcome.plan, outcome.report)
        if sizes_before is not None:
            outcome.sizes = relation_sizes.changes(sizes_before, relation_sizes.snapshot(connection, helper),
                                                   config.sizes_top)
        sessions.close()
        if config.verify is not None:
            verify_config = dataclasses.replace(
                config.verify, exclude_tables=config.verify.exclude_tables | {str(config.table)}
            )
            outcome.verification = dbverify.verify(connection, verify_config, before)
            _raise_on_verification(outcome.verification)
    return outcome


def status(connection: Connection, migrations: list[source.Migration], table: history.HistoryTable) -> dict[str, Any]:
    """Current version, applied and pending versions (changed repeatables last), and drift (never raises)."""
    rows = table.rows(connection)
    drift = None
    try:
        plan.check_drift(migrations, rows)
    except errors.MigrationError as error:
        drift = str(error)
    applied_numbers = {row.number for row in plan.applied_rows(rows)}
    repeatable_rows = table.repeatable_rows(connection)
    notes = table.repair_notes(connection) if rows else {}
    return {
        "historyTable": str(table),
        "currentVersion": plan.current_version(rows),
        "applied": [{"version": r.version, "name": r.name, "appliedAt": r.applied_at.isoformat(),
                     "durationMs": r.duration_ms, "appliedBy": r.applied_by, "kind": r.kind,
                     **({"repairNote": notes[r.version]} if r.version in notes else {})}
                    for r in [*rows, *repeatable_rows] if r.success],
        "failed": [r.version for r in [*rows, *repeatable_rows] if not r.success],
        "pending": [m.version for m in source.versioned(migrations) if m.number not in applied_numbers
                    and (not applied_numbers or m.number > max(applied_numbers))]
        + [m.version for m in plan.changed_repeatables(migrations, repeatable_rows)],
        "drift": drift,
    }


def _row_counts_before(connection: Connection, config: RunConfig) -> dict[str, int] | None:
    if config.verify is None or "rowCounts" not in config.verify.builtins:
        return None
    return dbverify.row_counts(connection, config.verify.exclude_tables | {str(config.table)})


def _raise_on_verification(results: list[dbverify.CheckResult]) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        raise errors.VerificationError(
            "verification failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed[:5])
        )


def _version_after(migration_plan: plan.Plan, report: ApplyReport) -> str | None:
    """The version the database is at after the steps in the report (all of them, or up to a failure)."""
    done = len(report.applied)
    versioned = [a for a in report.applied if not a.version.startswith(source.REPEATABLE_PREFIX)]
    if migration_plan.direction == "up" and versioned:
        return versioned[-1].version
    if migration_plan.direction == "up":
        return migration_plan.current_version
    if migration_plan.direction == "down" and done:
        if done == len(migration_plan.steps):
            return None if migration_plan.target_version in (None, "0") else migration_plan.target_version
        return migration_plan.steps[done].migration.version
    return migration_plan.current_version


def _finding(result: dict[str, Any]) -> lint.LintFinding:
    return lint.LintFinding(version=result["version"], rule=result["rule"], level=result["level"],
                            line=result["line"], message=result["message"], file=result.get("file", ""))
