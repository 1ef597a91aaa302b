"""DatabaseMigration: versioned migrations (or a framework command) applied safely."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from dbops.api import migration_source, versions
from dbops.api.base import ApiModel, Rule
from dbops.api.builtin_checks import DEFAULT_BUILTIN_CHECKS, BuiltinCheck
from dbops.api.common import (
    DatabaseConnection,
    Duration,
    JobTemplate,
    LocalObjectReference,
    PostgresTimeout,
    SqlCheck,
    Storage,
)
from dbops.api.cron import CronSchedule
from dbops.api.kubevalues import TimeZone
from dbops.api.migration_framework import FrameworkHistory
from dbops.api.migration_plan import MigrationPlan as MigrationPlan  # status.plan, re-exported for importers
from dbops.api.migration_rehearsal import ByteQuantity, Rehearsal, RehearsalReport
from dbops.api.migration_source import MigrationSource
from dbops.api.migration_verify import (
    DEFAULT_SIZE_GUARD,
    JOBS_CEL,
    QUERIES_CEL,
    RowCountVerification,
    SizeChanges,
    SizeReport,
    SmokeTest,
    SmokeTestResult,
    VerifyQuery,
    unique_job_names,
    unique_query_names,
)
from dbops.api.status import JobStatus

MigrationPhase = Literal[
    "Pending", "Waiting", "AwaitingApproval", "Planning", "Rehearsing", "Checking", "BackingUp", "Migrating", "Verifying",
    "RollingBack", "Succeeded", "Failed", "RolledBack",
]


class Approval(ApiModel):
    """Whether a person approves the plan before it runs."""

    rules = (Rule("self.mode == 'Manual' || !has(self.approvedPlanHash) || self.approvedPlanHash == ''",
                  "approvedPlanHash is only used with mode: Manual",
                  lambda m: m.mode == "Manual" or not m.approved_plan_hash, ".approvedPlanHash"),)

    mode: Literal["Automatic", "Manual"] = "Automatic"
    """Manual waits until approvedPlanHash equals status.plan.hash."""
    approved_plan_hash: Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{12,64})?$", max_length=64)] = ""
    """The plan hash a person approved."""


class MaintenanceWindow(ApiModel):
    """When migrations may start (the runbook's maintenance window)."""

    schedule: CronSchedule
    """Cron expression for the window starts, e.g. "0 2 * * SUN"."""
    duration: Duration
    """Length of each window, e.g. 2h."""
    time_zone: TimeZone = "UTC"
    """IANA time zone."""


class PreChecks(ApiModel):
    """Checks before migrating (the runbook's pre-migration checklist)."""

    enabled: bool = True
    """Run the pre-checks (a check Job before anything changes); false skips them all."""
    max_active_connections: Annotated[int, Field(ge=0)] = 100
    """Warn/fail above this many active connections."""
    max_blocking_transaction_seconds: Annotated[int, Field(ge=0)] = 60
    """Fail when a transaction older than this could block DDL."""
    fail_on: Literal["fail", "warn"] = "fail"
    """The worst result that still lets the migration run."""


class PreMigrationBackup(ApiModel):
    """A backup taken right before migrating (a child DatabaseBackup)."""

    rules = (Rule("!self.enabled || has(self.storage) || has(self.scheduleRef)",
                  "an enabled backup needs storage or scheduleRef",
                  lambda m: not m.enabled or m.storage is not None or m.schedule_ref is not None),)

    enabled: bool = False
    """Take the backup (recommended; needs storage or scheduleRef)."""
    storage: Storage | None = None
    """Where to store it."""
    schedule_ref: LocalObjectReference | None = None
    """Reuse a DatabaseBackupSchedule's backup template."""


class Lint(ApiModel):
    """squawk linting of SQL migrations."""

    enabled: bool = True
    """Lint the pending migrations."""
    fail_on: Literal["error", "warning", "none"] = "error"
    """The finding level that fails the plan."""


class HistoryImport(ApiModel):
    """Another tool's history table, imported into ours before the first plan (switching tools without
    re-baselining blind), as ``dbops migrate import`` does."""

    tool: Literal["golang-migrate", "flyway", "goose"] = Field(alias="from")
    """The tool whose history it is: golang-migrate (schema_migrations; refused when dirty), flyway
    (flyway_schema_history; refused with failed rows or changed scripts; its R__ repeatables too) or goose
    (goose_db_version; a version is applied when its newest row says is_applied, as goose decides)."""
    table: Annotated[str, StringConstraints(pattern=r"^(([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*)?$",
                                            max_length=127)] = ""
    """Their history table; empty means the tool's default (public.schema_migrations,
    public.flyway_schema_history, public.goose_db_version)."""


class ImportedRepeatable(ApiModel):
    """A Flyway repeatable migration (R__) the import recorded."""

    name: str
    """Its name as status.applied names it, e.g. R__views."""
    state: Literal["current", "changed"]
    """current: the text Flyway last applied (not run again); changed: edited since, so this run re-applied it."""


class ImportedHistory(ApiModel):
    """Another tool's history the last run imported into ours (spec.importHistory)."""

    tool: str = Field(alias="from")
    """The tool: golang-migrate, flyway or goose."""
    table: str = ""
    """Their history table it was read from."""
    count: int = 0
    """Versions recorded as applied (kind imported in our history table)."""
    newest_version: str = ""
    """The newest of them."""
    versions: list[str] = Field(default_factory=list)
    """The versions, oldest first (the runner's result is limited to 4 KiB: a long list keeps its start only;
    count has them all)."""
    repeatables: list[ImportedRepeatable] = Field(default_factory=list)
    """Flyway's repeatable migrations, each with whether it changed since Flyway ran it."""

    def summary(self) -> str:
        """``imported 6 versions of flyway's history (up to 5); 2 repeatables (changed since, re-applied:
        R__views)`` for the message and the HistoryImported Event."""
        text = f"imported {self.count} versions of {self.tool}'s history" + (
            f" (up to {self.newest_version})" if self.newest_version else "")
        if self.repeatables:
            changed = [r.name for r in self.repeatables if r.state == "changed"]
            text += f" and {len(self.repeatables)} repeatables (" + (
                f"changed since, re-applied: {', '.join(changed[:5])}" if changed else "none changed") + ")"
        return text


class Timeouts(ApiModel):
    """Per-migration timeouts, so DDL never queues behind long transactions and blocks traffic."""

    lock_timeout: PostgresTimeout = "5s"
    """lock_timeout for each migration."""
    statement_timeout: PostgresTimeout | None = None
    """statement_timeout for each migration."""
    lock_retries: Annotated[int, Field(ge=0, le=100)] = 3
    """Retries of a migration that hit lock_timeout."""


class MigrationVerification(ApiModel):
    """Checks after migrating (the runbook's post-migration verification)."""

    builtin: list[BuiltinCheck] = Field(default_factory=lambda: list(DEFAULT_BUILTIN_CHECKS))
    """Built-in checks (rowCounts is opt-in: see rowCounts)."""
    row_counts: RowCountVerification = Field(default_factory=RowCountVerification)
    """Which tables the rowCounts builtin compares, and the tolerance."""
    queries: Annotated[list[VerifyQuery], Field(max_length=16, json_schema_extra={
        "x-kubernetes-validations": QUERIES_CEL})] = Field(default_factory=list)
    """Application queries to EXPLAIN after migrating, with assertions (uses index, no Seq Scan, cost)."""
    sizes: SizeReport = Field(default_factory=SizeReport)
    """Table and index size changes kept in status."""
    orphan_scan_max_size: ByteQuantity = DEFAULT_SIZE_GUARD
    """The orphans and foreignKeys builtins count orphan rows only on referencing tables up to this size (with
    indexes and TOAST; partitions added up); the foreignKeys detail names the keys of larger tables it skipped and
    the bound. 0: scan every table (a full scan and join per foreign key, slow on large tables)."""

    jobs: Annotated[list[SmokeTest], Field(max_length=4, json_schema_extra={
        "x-kubernetes-validations": JOBS_CEL})] = Field(default_factory=list)
    """The application's own smoke tests (Jobs in its image) after migrating; a failure triggers onFailure."""

    _unique_queries = field_validator("queries")(unique_query_names)
    _unique_jobs = field_validator("jobs")(unique_job_names)
    checks: Annotated[list[SqlCheck], Field(max_length=64)] = Field(default_factory=list)
    """User SQL checks, e.g. no orphaned bookings."""


class DatabaseMigrationSpec(ApiModel):
    """The desired schema state."""

    rules = (
        Rule("self.onFailure != 'RestoreBackup' || self.backup.enabled",
             "onFailure: RestoreBackup needs backup.enabled: true",
             lambda m: m.on_failure != "RestoreBackup" or m.backup.enabled, ".onFailure"),
        Rule("!has(self.rehearsal) || !self.rehearsal.enabled || !has(self.source.command)",
             "rehearsal is not supported with a command source",
             lambda m: m.rehearsal is None or not m.rehearsal.enabled or m.source.command is None, ".rehearsal"),
        Rule("!has(self.source.command) || !has(self.targetVersion) || self.targetVersion == ''",
             "targetVersion is not supported with a command source",
             lambda m: m.source.command is None or not m.target_version, ".targetVersion"),
        Rule("self.allowGaps || !has(self.source.inline) || "
             f"!self.source.inline.all(m, {migration_source.PLAIN_CEL}) || "
             "self.source.inline.all(m, self.source.inline.all(n, int(n.version) >= int(m.version)) || "
             "self.source.inline.exists(n, int(n.version) == int(m.version) - 1))",
             "inline migration versions must be consecutive (1, 2, 3…), as the runner applies them, "
             "unless allowGaps is set",
             lambda m: m.allow_gaps or migration_source.gap(m.source.inline) is None, ".source.inline",
             lambda m: "inline migration versions must be consecutive: {} is followed by {} "
                       "(allowGaps: true accepts gaps)".format(*(migration_source.gap(m.source.inline) or ("", "")))),
        Rule("!has(self.source.command) || !has(self.importHistory)",
             "importHistory is not supported with a command source (the framework keeps its own history)",
             lambda m: m.source.command is None or m.import_history is None, ".importHistory"),
    )

    database: DatabaseConnection
    """The database to migrate."""
    source: MigrationSource
    """Where migrations come from."""
    target_version: Annotated[str, StringConstraints(pattern=versions.OPTIONAL_PATTERN,
                                                     max_length=versions.MAX_LENGTH)] = ""
    """Empty means latest; lower than the current version runs down migrations (needs allowDown). Digits, or
    Flyway's dotted form (1.2 or 1_2), compared part by part."""
    allow_down: bool = False
    """Allow down migrations."""
    history_table: Annotated[
        str, StringConstraints(pattern=r"^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$", max_length=127)
    ] = "public.dbops_migrations"
    """Table recording applied migrations."""
    baseline_version: Annotated[str, StringConstraints(pattern=versions.OPTIONAL_PATTERN,
                                                       max_length=versions.MAX_LENGTH)] = ""
    """Adopt an existing non-empty database at this version."""
    allow_gaps: bool = False
    """Accept gaps in the version numbers (golang-migrate, Flyway and timestamp versions leave them)."""
    import_history: HistoryImport | None = None
    """Import golang-migrate's, Flyway's or goose's history into ours while ours is empty (the plan reads it, the
    apply records it, status.importedHistory shows it; nothing to do once imported or where their table does not
    exist)."""
    dry_run: bool = False
    """Run inside a transaction that is rolled back and report the plan."""
    approval: Approval = Field(default_factory=Approval)
    """Automatic or Manual approval of the plan."""
    window: MaintenanceWindow | None = None
    """Only start inside this maintenance window."""
    pre_checks: PreChecks = Field(default_factory=PreChecks)
    """Pre-migration checks (connectivity, permissions, active connections, blocking transactions); their
    outcomes are in status.preChecks."""
    backup: PreMigrationBackup = Field(default_factory=PreMigrationBackup)
    """A backup taken right before migrating (a child DatabaseBackup), which onFailure: RestoreBackup restores."""
    lint: Lint = Field(default_factory=Lint)
    """squawk linting of the pending SQL migrations (findings in status.plan.lint)."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    """lock_timeout, statement_timeout and lock retries of each migration."""
    verify: MigrationVerification = Field(default_factory=MigrationVerification)
    """Checks after migrating (builtins, SQL checks, query plans, smoke tests); outcomes in
    status.verification and status.smokeTests."""
    rehearsal: Rehearsal = Field(default_factory=Rehearsal)
    """Rehearse the plan on a restored copy first."""
    on_failure: Literal["Abort", "RestoreBackup"] = "Abort"
    """Abort leaves the database as the failed migration left it (each migration is transactional);
    RestoreBackup restores the pre-migration backup."""
    job_template: JobTemplate | None = None
    """Overrides for the Jobs."""


class AppliedMigration(ApiModel):
    """One migration applied by the last run."""

    version: str
    """The migration's version, as in its file name (0003, 1.2, 20240101120000) or R__name for a repeatable."""
    name: str = ""
    """The migration's name (the file name after the version)."""
    duration_ms: int = 0
    """How long it ran, in milliseconds."""
    direction: Literal["up", "down"] = "up"
    """up (applied) or down (rolled back)."""


class CheckResult(ApiModel):
    """One pre-check."""

    name: str
    """The pre-check (connectivity, permissions, activeConnections, blockingTransactions, …)."""
    result: Literal["pass", "warn", "fail"]
    """pass, warn (reported, does not stop the run unless preChecks.failOn says so) or fail."""
    detail: str = ""
    """What the check found, in one line."""


class VerificationResult(ApiModel):
    """One verification."""

    name: str
    """The verification: a builtin (foreignKeys, invalidIndexes, rowCounts), orphans:<schema.table.key>,
    a SQL check's name, or query:<name>."""
    passed: bool
    """Whether it passed; a failed one fails the run (and triggers onFailure)."""
    detail: str = ""
    """What it found, in one line (e.g. the tables whose row counts changed, with the counts)."""
    plan: str = ""
    """The compact plan of a query:<name> verification."""


class DatabaseMigrationStatus(JobStatus[MigrationPhase]):
    """Observed state of a DatabaseMigration."""

    phase: MigrationPhase = "Pending"
    """Where the migration is: Pending, Waiting (for the window), AwaitingApproval, Planning, Rehearsing,
    Checking, BackingUp, Migrating, Verifying, RollingBack, then Succeeded, Failed or RolledBack."""
    source_hash: str = ""
    """Hash of the migration content this status describes; a change re-runs the migration."""
    plan: MigrationPlan | None = None
    """The plan of this revision: pending migrations, direction, lint findings and its hash (what
    approval.approvedPlanHash approves)."""
    next_window: str | None = None
    """Start of the next maintenance window, while Waiting."""
    current_version: str = ""
    """Version after the last run."""
    previous_version: str = ""
    """Version before the last run."""
    applied: list[AppliedMigration] = Field(default_factory=list)
    """Migrations applied (or rolled back) by the last run; in a dry run, those that ran in its rolled-back
    transaction."""
    dry_run: bool = False
    """The last run was a dry run: nothing was committed, the versions are the database's before it."""
    pre_checks: list[CheckResult] = Field(default_factory=list)
    """The pre-checks' outcomes."""
    backup_name: str | None = None
    """The pre-migration DatabaseBackup."""
    restore_name: str | None = None
    """The rollback DatabaseRestore."""
    verification: list[VerificationResult] = Field(default_factory=list)
    """The verifications' outcomes of the last run."""
    rehearsal: RehearsalReport | None = None
    """What the rehearsal on a restored copy showed."""
    sizes: SizeChanges | None = None
    """Table and index size changes of the last run."""
    framework_history: list[FrameworkHistory] = Field(default_factory=list)
    """Command mode: what the framework recorded in its own history during the last run."""
    smoke_tests: list[SmokeTestResult] = Field(default_factory=list)
    """The smoke tests (verify.jobs) of the last run."""
    imported_history: ImportedHistory | None = None
    """What the last run imported from another tool's history (spec.importHistory); absent when it imported
    nothing (already imported, their table missing) and after a dry run, which imports nothing."""
