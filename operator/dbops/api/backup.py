"""DatabaseBackup: one logical, compressed, checksummed and verified backup of one database."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from dbops.api.base import ApiModel, Rule
from dbops.api.common import DatabaseConnection, Duration, JobTemplate, SqlCheck, Storage
from dbops.api.status import JobStatus

BackupPhase = Literal["Pending", "Running", "Verifying", "Succeeded", "Failed"]

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Compression(ApiModel):
    """How the dump stream is compressed (outside pg_dump, which runs with -Z0)."""

    rules = (
        Rule("self.codec != 'zstd' || self.level <= 19", "zstd levels are 1 to 19",
             lambda m: m.codec != "zstd" or m.level <= 19, ".level"),
        Rule("self.codec != 'gzip' || self.level <= 9", "gzip levels are 1 to 9",
             lambda m: m.codec != "gzip" or m.level <= 9, ".level"),
    )

    codec: Literal["zstd", "gzip", "none"] = "zstd"
    """Compression codec."""
    level: Annotated[int, Field(ge=1, le=19)] = 1
    """Compression level (zstd 1–19, gzip 1–9); zstd 1 is faster than 3 and no larger on dumps (bench/README.md)."""


class BackupScope(ApiModel):
    """What to dump: the runbook's schema-only, data-only and critical-tables backups."""

    rules = (Rule("!(self.schemaOnly && self.dataOnly)", "schemaOnly and dataOnly exclude each other",
                  lambda m: not (m.schema_only and m.data_only)),)

    schema_only: bool = False
    """Dump only object definitions."""
    data_only: bool = False
    """Dump only data."""
    schemas: Annotated[list[Identifier], Field(max_length=256)] = Field(default_factory=list)
    """Schemas to include (all when empty)."""
    exclude_schemas: Annotated[list[Identifier], Field(max_length=256)] = Field(default_factory=list)
    """Schemas to exclude."""
    tables: Annotated[list[Identifier], Field(max_length=1024)] = Field(default_factory=list)
    """Tables to include (all when empty); patterns as pg_dump -t."""
    exclude_tables: Annotated[list[Identifier], Field(max_length=1024)] = Field(default_factory=list)
    """Tables to exclude."""
    exclude_table_data: Annotated[list[Identifier], Field(max_length=1024)] = Field(default_factory=list)
    """Tables whose definition is dumped but not their data."""


class BackupVerification(ApiModel):
    """How a backup is verified after it is written."""

    decode: bool = True
    """Checksum re-check plus a full decode of the archive (not just its table of contents)."""
    restore_test: bool = False
    """Restore into a scratch database and compare row counts with the manifest."""
    checks: Annotated[list[SqlCheck], Field(max_length=64)] = Field(default_factory=list)
    """SQL checks run against the scratch database (needs restoreTest)."""


class DatabaseBackupSpec(ApiModel):
    """The desired backup."""

    rules = (
        Rule("self.parallelJobs == 1 || self.format == 'directory'", "parallelJobs > 1 needs format: directory",
             lambda m: m.parallel_jobs == 1 or m.format == "directory", ".parallelJobs"),
        Rule("self.format != 'plain' || !self.verify.restoreTest", "restoreTest needs format custom or directory",
             lambda m: m.format != "plain" or not m.verify.restore_test, ".verify.restoreTest"),
        Rule("size(self.verify.checks) == 0 || self.verify.restoreTest", "verify.checks need verify.restoreTest: true",
             lambda m: not m.verify.checks or m.verify.restore_test, ".verify.checks"),
    )

    database: DatabaseConnection
    """The database to back up."""
    storage: Storage
    """Where to store the artifact."""
    format: Literal["custom", "directory", "plain"] = "custom"
    """pg_dump format."""
    compression: Compression = Field(default_factory=Compression)
    """Compression of the stream."""
    scope: BackupScope = Field(default_factory=BackupScope)
    """What to dump."""
    parallel_jobs: Annotated[int, Field(ge=1, le=16)] = 1
    """Parallel dump jobs (directory format only)."""
    verify: BackupVerification = Field(default_factory=BackupVerification)
    """Verification after the backup."""
    deletion_policy: Literal["Delete", "Retain"] = "Retain"
    """Stored artifacts when the resource is deleted: Retain (default, a prune keeps the dump) or Delete."""
    ttl: Duration | None = None
    """Delete this resource (and per deletionPolicy its artifacts) this long after it completes, e.g. 720h."""
    job_template: JobTemplate | None = None
    """Overrides for the Jobs."""


class Artifact(ApiModel):
    """The stored artifact."""

    uri: str = ""
    """Location of the dump (no credentials)."""
    manifest_uri: str = ""
    """Location of manifest.json, the commit marker."""
    size_bytes: int = 0
    """Size of the stored dump."""
    sha256: str = ""
    """SHA-256 of the stored dump."""
    format: str = ""
    """pg_dump format."""
    codec: str = ""
    """Compression codec."""


class BackupSource(ApiModel):
    """What was backed up."""

    database: str = ""
    """Name of the database dumped (the restore's confirmOverwrite of a migration rollback uses it)."""
    server_version: str = ""
    """PostgreSQL server version."""
    database_size_bytes: int = 0
    """Database size when dumped."""
    table_count: int = 0
    """Number of tables dumped."""
    dump_tool_version: str = ""
    """pg_dump version."""


class BackupJobResult(ApiModel):
    """The part of the backup runner's result document the operator reads: written by `dbops backup`,
    read by the DatabaseBackup reconciler (one model, so a renamed field cannot silently break either side)."""

    artifact: Artifact
    """What was stored."""
    source: BackupSource = Field(default_factory=BackupSource)
    """What was backed up."""


class RestoreTestResult(ApiModel):
    """Outcome of a restore test into a scratch database."""

    passed: bool = False
    """Whether all tables matched and all checks passed."""
    tables_compared: int = 0
    """Tables whose row counts were compared."""
    mismatches: list[str] = Field(default_factory=list)
    """Tables or checks that did not match."""


class BackupVerificationResult(ApiModel):
    """Outcome of verification."""

    decoded: bool = False
    """Checksum and full decode passed."""
    restore_test: RestoreTestResult | None = None
    """Restore test outcome, when asked."""
    verified_at: datetime | None = None
    """When verification finished."""


class DatabaseBackupStatus(JobStatus[BackupPhase]):
    """Observed state of a DatabaseBackup."""

    phase: BackupPhase = "Pending"
    """Pending, Running, Verifying, Succeeded or Failed."""
    artifact: Artifact | None = None
    """The stored artifact."""
    source: BackupSource | None = None
    """What was backed up."""
    verification: BackupVerificationResult | None = None
    """Verification outcome."""
    expires_at: datetime | None = None
    """When ttl deletes this backup."""
