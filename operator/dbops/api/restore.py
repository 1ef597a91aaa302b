"""DatabaseRestore: restore a backup (whole database, some tables, schema or data only)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from dbops.api.backup import RestoreTestResult
from dbops.api.base import ApiModel, Rule
from dbops.api.common import DatabaseConnection, JobTemplate, LocalObjectReference, SqlCheck, Storage
from dbops.api.status import JobStatus

_CONFIRMED = ("(has(self.confirmOverwrite) && self.confirmOverwrite != '' && "
              "(!has(self.target.database.name) || self.confirmOverwrite == self.target.database.name))")


def _confirmed(spec: DatabaseRestoreSpec) -> bool:
    """The Python twin of _CONFIRMED: confirmOverwrite is set, and names the target when the target does."""
    name = spec.target.database.name
    return bool(spec.confirm_overwrite) and (name is None or spec.confirm_overwrite == name)


RestorePhase = Literal["Pending", "BackingUp", "Restoring", "Verifying", "Succeeded", "Failed"]


class RestoreSource(ApiModel):
    """The backup to restore: exactly one of backupRef or storage with path."""

    rules = (
        Rule("has(self.backupRef) != has(self.storage)", "set exactly one of backupRef or storage",
             lambda m: (m.backup_ref is None) != (m.storage is None)),
        Rule("!has(self.storage) || (has(self.path) && self.path != '')",
             "storage needs path: the backup's directory inside the storage",
             lambda m: m.storage is None or bool(m.path), ".path"),
    )

    backup_ref: LocalObjectReference | None = None
    """A DatabaseBackup in this namespace."""
    storage: Storage | None = None
    """Storage holding an artifact made elsewhere (disaster recovery)."""
    path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\s]*$")] | None = None
    """Directory of the backup (holding manifest.json) inside the storage."""


class RestoreTarget(ApiModel):
    """The database restored into."""

    database: DatabaseConnection
    """Connection to the target database."""
    create: bool = False
    """Create the database if it does not exist."""


class SafetyBackup(ApiModel):
    """A backup of the target taken before overwriting it (a child DatabaseBackup)."""

    rules = (Rule("!self.enabled || has(self.storage)", "an enabled safety backup needs storage",
                  lambda m: not m.enabled or m.storage is not None),)

    enabled: bool = False
    """Take the safety backup."""
    storage: Storage | None = None
    """Where to store it."""


class RestoreVerification(ApiModel):
    """Checks after restoring."""

    row_counts: bool = True
    """Compare per-table row counts with the backup's manifest."""
    checks: Annotated[list[SqlCheck], Field(max_length=64)] = Field(default_factory=list)
    """SQL checks against the restored database."""


class DatabaseRestoreSpec(ApiModel):
    """The desired restore."""

    rules = (
        Rule("self.mode == 'Tables' ? size(self.tables) > 0 : size(self.tables) == 0",
             "tables must be listed with mode: Tables, and only then",
             lambda m: bool(m.tables) == (m.mode == "Tables"), ".tables"),
        Rule(f"!(self.clean || self.recreate) || {_CONFIRMED}",
             "clean or recreate overwrites the target: set confirmOverwrite to the target database name",
             lambda m: not (m.clean or m.recreate) or _confirmed(m), ".confirmOverwrite"),
        Rule(f"self.mode != 'Tables' || (self.strategy != 'Replace' && self.onConflict != 'Overwrite') || {_CONFIRMED}",
             "a Tables restore with strategy Replace or onConflict Overwrite changes existing rows: "
             "set confirmOverwrite to the target database name",
             lambda m: m.mode != "Tables" or (m.strategy != "Replace" and m.on_conflict != "Overwrite")
             or _confirmed(m), ".confirmOverwrite"),
        Rule("self.mode == 'Tables' || self.strategy == 'Replace'", "strategy is only used with mode: Tables",
             lambda m: m.mode == "Tables" or m.strategy == "Replace", ".strategy"),
        Rule("self.onConflict == 'Keep' || self.strategy == 'Merge'",
             "onConflict: Overwrite is only used with strategy: Merge",
             lambda m: m.on_conflict == "Keep" or m.strategy == "Merge", ".onConflict"),
        # Decidable whenever the target names its database (host+name, or name overriding the URI's); with a URI
        # alone the operator reads the Secret before the Job (InvalidSpec on the resource), and the runner checks too.
        Rule("!has(self.confirmOverwrite) || self.confirmOverwrite == '' || "
             "!has(self.target.database.name) || self.confirmOverwrite == self.target.database.name",
             "confirmOverwrite must equal target.database.name",
             lambda m: not m.confirm_overwrite or m.target.database.name is None
             or m.confirm_overwrite == m.target.database.name, ".confirmOverwrite",
             lambda m: f"confirmOverwrite {m.confirm_overwrite!r} must equal target.database.name "
                       f"{m.target.database.name!r}"),
        Rule("!self.recreate || self.mode == 'Full'", "recreate is only used with mode: Full",
             lambda m: not m.recreate or m.mode == "Full", ".recreate"),
        Rule("self.parallelJobs == 1 || self.mode != 'Tables'", "parallelJobs > 1 is not used with mode: Tables",
             lambda m: m.parallel_jobs == 1 or m.mode != "Tables", ".parallelJobs"),
    )

    source: RestoreSource
    """The backup to restore."""
    target: RestoreTarget
    """The database restored into."""
    mode: Literal["Full", "Tables", "SchemaOnly", "DataOnly"] = "Full"
    """Full, Tables (the runbook's partial restore), SchemaOnly or DataOnly."""
    tables: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=1024)] = (
        Field(default_factory=list)
    )
    """Tables to restore with mode: Tables (schema-qualified or not)."""
    strategy: Literal["Replace", "Merge", "MissingOnly"] = "Replace"
    """Mode Tables: Replace (rows become the backup's; needs confirmOverwrite), Merge (insert the backup's missing
    rows, keep every current row, report rows that differ) or MissingOnly (insert missing rows only). Foreign keys
    into and out of the tables are checked before commit; a violation rolls everything back."""
    on_conflict: Literal["Keep", "Overwrite"] = "Keep"
    """Strategy Merge: keep rows that differ from the backup, or overwrite them (needs confirmOverwrite)."""
    clean: bool = False
    """Drop objects before recreating them (needs confirmOverwrite)."""
    recreate: bool = False
    """Re-create the target database before a Full restore: drops objects not in the backup (needs CREATEDB)."""
    parallel_jobs: Annotated[int, Field(ge=1, le=16)] = 1
    """Parallel restore jobs (the archive is downloaded first when > 1)."""
    confirm_overwrite: Annotated[str, StringConstraints(max_length=63)] = ""
    """Must equal the target database name to restore over a non-empty database (Full, SchemaOnly, DataOnly), and
    for Tables restores that change existing rows (strategy Replace, or Merge with onConflict Overwrite)."""
    safety_backup: SafetyBackup = Field(default_factory=SafetyBackup)
    """Back up the target first."""
    terminate_connections: bool = False
    """Terminate other sessions on the target first."""
    verify: RestoreVerification = Field(default_factory=RestoreVerification)
    """Checks after restoring."""
    job_template: JobTemplate | None = None
    """Overrides for the Jobs."""


class RestoredFrom(ApiModel):
    """The artifact restored."""

    uri: str = ""
    """Location of the backup (no credentials)."""
    sha256: str = ""
    """Its checksum, verified before the restore."""
    backup_name: str | None = None
    """The DatabaseBackup, when restored from one."""


class DatabaseRestoreStatus(JobStatus[RestorePhase]):
    """Observed state of a DatabaseRestore."""

    phase: RestorePhase = "Pending"
    """Where the restore is: Pending, BackingUp (the safety backup), Restoring, Verifying, then Succeeded or
    Failed."""
    restored_from: RestoredFrom | None = None
    """The artifact restored."""
    safety_backup_name: str | None = None
    """The safety DatabaseBackup."""
    tables_restored: int | None = None
    """How many tables were restored."""
    restored_tables: Annotated[list[str], Field(max_length=1024)] | None = None
    """Mode Tables: the tables restored (a partitioned table's partitions listed one by one)."""
    verification: RestoreTestResult | None = None
    """Row-count comparison and checks."""
