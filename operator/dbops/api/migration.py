"""DatabaseMigration: versioned migrations (or a framework command) applied safely."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from dbops.api import kubevalues
from dbops.api.base import ApiModel
from dbops.api.common import (
    DatabaseConnection,
    Duration,
    JobTemplate,
    LocalObjectReference,
    PostgresTimeout,
    ResourceName,
    SecretKey,
    SqlCheck,
    Storage,
)
from dbops.api.cron import CronSchedule
from dbops.api.kubevalues import TimeZone
from dbops.api.status import ResourceStatus

BuiltinCheck = Literal["foreignKeys", "orphans", "invalidIndexes", "rowCounts"]
BUILTIN_CHECKS: tuple[BuiltinCheck, ...] = ("foreignKeys", "orphans", "invalidIndexes", "rowCounts")
MigrationPhase = Literal[
    "Pending", "Waiting", "AwaitingApproval", "Planning", "Checking", "BackingUp", "Migrating", "Verifying",
    "RollingBack", "Succeeded", "Failed", "RolledBack",
]


# SQL with nothing but whitespace, ';', -- comments and (non-nested) /* */ comments: the runner finds no statement.
NO_STATEMENT = r"^([\t\n\f\r ;]|--[^\n]*|/\*([^*]|\*+[^*/])*\*+/)*$"


class InlineMigration(ApiModel):
    """One migration given in the resource."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [{
                "rule": f"!self.up.matches('{NO_STATEMENT.replace(chr(92), chr(92) * 2)}')",
                "message": "up has no SQL statement (only comments or ';')", "fieldPath": ".up",
            }]
        }
    }

    version: Annotated[str, StringConstraints(pattern=r"^0*[0-9]{1,18}$", max_length=32)]
    """Version, digits only; applied in numeric order, consecutive (1, 2, 3 or 0001, 0002, …)."""
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=128)]
    """Short snake_case name, starting with a letter or digit."""
    up: Annotated[str, StringConstraints(min_length=1, max_length=32768)]
    """SQL that applies the migration."""
    down: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """SQL that reverts it."""

    @model_validator(mode="after")
    def _has_a_statement(self) -> InlineMigration:
        if re.fullmatch(NO_STATEMENT, self.up):
            raise ValueError(f"migration {self.version}: up has no SQL statement (only comments or ';')")
        return self


FIELD_PATHS = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]|"
    r"spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)


class KeyReference(ApiModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: ResourceName
    """Name of the Secret or ConfigMap."""
    key: SecretKey
    """Key inside it."""
    optional: bool | None = None
    """Whether the container starts when the key is missing."""


class FieldReference(ApiModel):
    """A field of the pod (the downward API)."""

    field_path: Annotated[str, StringConstraints(pattern=FIELD_PATHS, max_length=256)]
    """e.g. metadata.name, metadata.labels['team'], status.podIP."""
    api_version: Literal["v1"] | None = None
    """Version of the field path."""


class ResourceFieldReference(ApiModel):
    """A resource of a container (the downward API)."""

    resource: Literal["limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu",
                      "requests.memory", "requests.ephemeral-storage"]
    """The resource."""
    container_name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                                     max_length=63)] | None = None
    """The container (default: this one)."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from: exactly one source."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [{
                "rule": "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef), "
                        "has(self.resourceFieldRef)].filter(x, x).size() == 1",
                "message": "set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef",
            }]
        }
    }

    secret_key_ref: KeyReference | None = None
    """A Secret key."""
    config_map_key_ref: KeyReference | None = None
    """A ConfigMap key."""
    field_ref: FieldReference | None = None
    """A pod field."""
    resource_field_ref: ResourceFieldReference | None = None
    """A container resource."""

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        sources = [self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef")
        return self


class EnvVar(ApiModel):
    """An environment variable for command mode (values or Secret/ConfigMap references)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                 "message": "set value or valueFrom, not both", "fieldPath": ".valueFrom"},
                {"rule": kubevalues.CREDENTIAL_LITERAL_CEL,
                 "message": "a credential (a name with PASSWORD, SECRET, TOKEN or KEY, or a URL with a password) "
                            "must not be a literal value: use valueFrom.secretKeyRef", "fieldPath": ".value"},
            ]
        }
    }

    name: Annotated[str, StringConstraints(pattern=kubevalues.ENV_NAME_PATTERN, max_length=253)]
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """Literal value (never a credential: use valueFrom)."""
    value_from: EnvVarSource | None = None
    """A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef)."""

    @model_validator(mode="after")
    def _no_literal_credentials(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        if kubevalues.credential_literal(self.name, self.value):
            raise ValueError(f"env {self.name}: a credential must not be a literal value: use valueFrom.secretKeyRef")
        return self


class CommandSource(ApiModel):
    """A framework's own migration command (Django, Alembic, Flyway…) wrapped with checks."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    """The application image that holds the framework."""
    command: Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(min_length=1, max_length=64)]
    """Command and arguments."""
    env: Annotated[list[EnvVar], Field(max_length=128)] = Field(default_factory=list)
    """Environment."""


class MigrationSource(ApiModel):
    """Where migrations come from: exactly one of configMapRef, inline, command."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.configMapRef), has(self.inline), has(self.command)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one migration source: configMapRef, inline or command",
                }
            ]
        }
    }

    config_map_ref: LocalObjectReference | None = None
    """A ConfigMap of NNNN_name.up.sql / NNNN_name.down.sql files."""
    inline: Annotated[list[InlineMigration], Field(min_length=1, max_length=50, json_schema_extra={
        "x-kubernetes-validations": [{
            # Versions compare as numbers (0001 is 1), as the runner compares them.
            "rule": "self.all(m, self.exists_one(n, int(n.version) == int(m.version)))",
            "message": "inline migration versions must be unique (compared as numbers: 0001 and 1 are the same)",
        }, {
            "rule": "self.all(m, self.all(n, int(n.version) >= int(m.version)) || "
                    "self.exists(n, int(n.version) == int(m.version) - 1))",
            "message": "inline migration versions must be consecutive (1, 2, 3…), as the runner applies them",
        }]})] | None = None
    """Migrations listed in the resource (at most 50 of 32 KiB: an object must fit etcd; use configMapRef for more)."""
    command: CommandSource | None = None
    """A framework command."""

    @field_validator("inline")
    @classmethod
    def _unique_versions(cls, inline: list[InlineMigration] | None) -> list[InlineMigration] | None:
        seen: dict[int, str] = {}
        for migration in inline or []:
            number = int(migration.version)  # as the runner compares them: 0001 is 1
            if number in seen:
                same = "" if seen[number] == migration.version else f" (the same number as {seen[number]})"
                raise ValueError(f"duplicate migration version: {migration.version}{same}")
            seen[number] = migration.version
        numbers = sorted(seen)
        for previous, current in itertools.pairwise(numbers):
            if current != previous + 1:
                raise ValueError(f"inline migration versions must be consecutive: {seen[previous]} is followed by "
                                 f"{seen[current]}")
        return inline


class Approval(ApiModel):
    """Whether a person approves the plan before it runs."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.mode == 'Manual' || !has(self.approvedPlanHash) || self.approvedPlanHash == ''",
                    "message": "approvedPlanHash is only used with mode: Manual",
                    "fieldPath": ".approvedPlanHash",
                }
            ]
        }
    }

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
    """Run pre-checks."""
    max_active_connections: Annotated[int, Field(ge=0)] = 100
    """Warn/fail above this many active connections."""
    max_blocking_transaction_seconds: Annotated[int, Field(ge=0)] = 60
    """Fail when a transaction older than this could block DDL."""
    fail_on: Literal["fail", "warn"] = "fail"
    """The worst result that still lets the migration run."""


class PreMigrationBackup(ApiModel):
    """A backup taken right before migrating (a child DatabaseBackup)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!self.enabled || has(self.storage) || has(self.scheduleRef)",
                    "message": "an enabled backup needs storage or scheduleRef",
                }
            ]
        }
    }

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

    builtin: list[BuiltinCheck] = Field(default_factory=lambda: list(BUILTIN_CHECKS))
    """Built-in checks."""
    checks: Annotated[list[SqlCheck], Field(max_length=64)] = Field(default_factory=list)
    """User SQL checks, e.g. no orphaned bookings."""


class DatabaseMigrationSpec(ApiModel):
    """The desired schema state."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.onFailure != 'RestoreBackup' || self.backup.enabled",
                    "message": "onFailure: RestoreBackup needs backup.enabled: true",
                    "fieldPath": ".onFailure",
                },
                {
                    "rule": "!has(self.source.command) || !has(self.targetVersion) || self.targetVersion == ''",
                    "message": "targetVersion is not supported with a command source",
                    "fieldPath": ".targetVersion",
                },
            ]
        }
    }

    database: DatabaseConnection
    """The database to migrate."""
    source: MigrationSource
    """Where migrations come from."""
    target_version: Annotated[str, StringConstraints(pattern=r"^([0-9]+)?$", max_length=32)] = ""
    """Empty means latest; lower than the current version runs down migrations (needs allowDown)."""
    allow_down: bool = False
    """Allow down migrations."""
    history_table: Annotated[
        str, StringConstraints(pattern=r"^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$", max_length=127)
    ] = "public.dbops_migrations"
    """Table recording applied migrations."""
    baseline_version: Annotated[str, StringConstraints(pattern=r"^([0-9]+)?$", max_length=32)] = ""
    """Adopt an existing non-empty database at this version."""
    dry_run: bool = False
    """Run inside a transaction that is rolled back and report the plan."""
    approval: Approval = Field(default_factory=Approval)
    """Automatic or Manual approval of the plan."""
    window: MaintenanceWindow | None = None
    """Only start inside this maintenance window."""
    pre_checks: PreChecks = Field(default_factory=PreChecks)
    """Pre-migration checks."""
    backup: PreMigrationBackup = Field(default_factory=PreMigrationBackup)
    """Pre-migration backup."""
    lint: Lint = Field(default_factory=Lint)
    """Linting."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    """Timeouts."""
    verify: MigrationVerification = Field(default_factory=MigrationVerification)
    """Post-migration verification."""
    on_failure: Literal["Abort", "RestoreBackup"] = "Abort"
    """Abort leaves the database as the failed migration left it (each migration is transactional);
    RestoreBackup restores the pre-migration backup."""
    job_template: JobTemplate | None = None
    """Overrides for the Jobs."""


class MigrationPlan(ApiModel):
    """What a run would do."""

    hash: str = ""
    """Stable hash of the plan; approve it with approval.approvedPlanHash."""
    pending: list[str] = Field(default_factory=list)
    """Pending versions, in order."""
    lint: list[str] = Field(default_factory=list)
    """Lint findings."""
    destructive: bool = False
    """Whether the plan drops or rewrites data."""


class AppliedMigration(ApiModel):
    """One migration applied by the last run."""

    version: str
    """Version."""
    name: str = ""
    """Name."""
    duration_ms: int = 0
    """Duration."""


class CheckResult(ApiModel):
    """One pre-check."""

    name: str
    """Check name."""
    result: Literal["pass", "warn", "fail"]
    """Outcome."""
    detail: str = ""
    """Detail line."""


class VerificationResult(ApiModel):
    """One verification."""

    name: str
    """Check name."""
    passed: bool
    """Outcome."""
    detail: str = ""
    """Detail line."""


class DatabaseMigrationStatus(ResourceStatus):
    """Observed state of a DatabaseMigration."""

    phase: MigrationPhase = "Pending"
    """Life-cycle phase."""
    job_name: str | None = None
    """The current Job."""
    source_hash: str = ""
    """Hash of the migration content this status describes; a change re-runs the migration."""
    plan: MigrationPlan | None = None
    """The plan."""
    next_window: str | None = None
    """Start of the next maintenance window, while Waiting."""
    current_version: str = ""
    """Version after the last run."""
    previous_version: str = ""
    """Version before the last run."""
    applied: list[AppliedMigration] = Field(default_factory=list)
    """Migrations applied by the last run."""
    pre_checks: list[CheckResult] = Field(default_factory=list)
    """Pre-check outcomes."""
    backup_name: str | None = None
    """The pre-migration DatabaseBackup."""
    restore_name: str | None = None
    """The rollback DatabaseRestore."""
    verification: list[VerificationResult] = Field(default_factory=list)
    """Verification outcomes."""
