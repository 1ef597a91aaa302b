"""DatabaseMigration rehearsal: the plan applied to a copy restored from a backup first, and what that showed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from dbops.api import kubevalues
from dbops.api.base import ApiModel
from dbops.api.common import DatabaseConnection, Duration, LocalObjectReference


def _byte_quantity(text: str) -> str:
    kubevalues.quantity(text)
    return text


ByteQuantity = Annotated[
    str, StringConstraints(max_length=32), AfterValidator(_byte_quantity),
    Field(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "isQuantity(self) && !self.startsWith('-')",
        "message": "must be a non-negative quantity of bytes such as 512Mi or 2G"}]}),
]
"""A size as a Kubernetes quantity (``512Mi``, ``2G``, ``1000000``)."""


def quantity_bytes(text: str) -> int:
    """The whole bytes of a size quantity (``1.5Ki`` → 1536)."""
    return kubevalues.capped_int(kubevalues.quantity(text))


class Rehearsal(ApiModel):
    """Rehearse the plan on a scratch copy restored from a backup before touching the database (the
    runbook's "test on staging first"). The copy lives on the target's server, or on ``server`` when given, as
    ``dbops_rehearsal_<hash>`` (the role needs CREATEDB there) and is dropped afterwards, also when it fails."""

    enabled: bool = False
    """Rehearse before the real run."""
    server: DatabaseConnection | None = None
    """A staging server to restore the copy on and rehearse there instead of the target's server (its database
    is only used to connect; credentials from Secrets only). It must run the backup's PostgreSQL major or newer
    (RehearsalServerMismatch otherwise); a newer major is rehearsed with a warning in status.rehearsal.warnings."""
    backup_ref: LocalObjectReference | None = None
    """The DatabaseBackup to restore the copy from. Default: the pre-migration backup when backup.enabled and
    approval is Automatic; otherwise the newest Succeeded DatabaseBackup of the same database in the namespace."""
    max_duration: Duration | None = None
    """Stop (RehearsalExceededWindow) when the migrations take longer on the copy. Default: window.duration."""
    max_exclusive_lock_table_size: ByteQuantity | None = None
    """Stop (RehearsalLockedLargeTable) when a migration holds an ACCESS EXCLUSIVE lock on a table larger than
    this (its size with TOAST before the migration), e.g. 100Mi."""
    available_space: ByteQuantity | None = None
    """The disk the server has free for the copy, e.g. 50Gi (PostgreSQL does not report free disk to a client, so it
    is declared here). Before restoring, the rehearsal refuses (RehearsalInsufficientSpace) when twice the database
    size the backup recorded (the copy plus room for the migrations' table rewrites: the runbook's margin) is
    larger. Unset: not checked, and status.rehearsal.spaceCheck says so."""


class RehearsalLock(ApiModel):
    """An ACCESS EXCLUSIVE lock a migration held on a table during the rehearsal."""

    table: str
    """The locked table, as schema.table."""
    held_ms: int = 0
    """How long it was held, as sampled (a lock seen once shows one sampling interval, 10 ms)."""
    table_bytes: int = 0
    """The table's size before the migration."""
    version: str = ""
    """The migration (in largestExclusiveLock)."""


class RehearsalSizeChange(ApiModel):
    """A table whose size changed."""

    table: str
    """The table, as schema.table."""
    table_bytes: list[int] = Field(default_factory=list)
    """Table size with TOAST, before and after."""
    index_bytes: list[int] = Field(default_factory=list)
    """Size of its indexes, before and after."""


class RehearsedMigration(ApiModel):
    """What one migration did on the copy."""

    version: str
    """The migration's version."""
    name: str = ""
    """The migration's name."""
    duration_ms: int = 0
    """How long it ran on the copy, in milliseconds."""
    rows_inserted: int = 0
    """Rows inserted (pg_stat_user_tables)."""
    rows_updated: int = 0
    """Rows updated (pg_stat_user_tables)."""
    rows_deleted: int = 0
    """Rows deleted (pg_stat_user_tables)."""
    exclusive_locks: list[RehearsalLock] = Field(default_factory=list)
    """ACCESS EXCLUSIVE locks on tables, largest table first (at most 5)."""
    size_changes: list[RehearsalSizeChange] = Field(default_factory=list)
    """Tables whose size changed, largest change first (at most 5)."""
    failed: bool = False
    """This migration failed on the copy."""


class RehearsalCheck(ApiModel):
    """One verification on the copy."""

    name: str
    """The verification, named as in status.verification."""
    passed: bool
    """Whether it passed on the copy."""
    detail: str = ""
    """What it found, in one line."""


class RehearsalReport(ApiModel):
    """What the rehearsal showed (status.rehearsal)."""

    plan_hash: str = ""
    """The plan rehearsed; manual approval covers only this plan hash."""
    outcome: Literal["Running", "Passed", "Failed", "Blocked"] = "Running"
    """Passed, Failed (the plan or the verification failed on the copy) or Blocked (a limit was crossed)."""
    reason: str = ""
    """Why it failed or was blocked (RehearsalFailed, RehearsalExceededWindow, RehearsalLockedLargeTable…)."""
    message: str = ""
    """What happened, in one line."""
    backup: str = ""
    """The DatabaseBackup restored."""
    job_name: str = ""
    """The rehearsal Job."""
    restore_ms: int = 0
    """Time to restore the copy."""
    duration_ms: int = 0
    """Time the migrations took on the copy (compared with maxDuration)."""
    rows_touched: int = 0
    """Rows inserted, updated and deleted by all migrations."""
    largest_exclusive_lock: RehearsalLock | None = None
    """The ACCESS EXCLUSIVE lock on the largest table."""
    migrations: list[RehearsedMigration] = Field(default_factory=list)
    """What each migration did on the copy: duration, rows, locks, size changes."""
    verification: list[RehearsalCheck] = Field(default_factory=list)
    """Verification of the copy after the migrations."""
    scratch_database: str = ""
    """The scratch database."""
    scratch_dropped: bool = False
    """Whether the scratch database was dropped (false: drop it by hand)."""
    server: str = ""
    """The server the copy was restored on (host:port, no credentials)."""
    warnings: list[str] = Field(default_factory=list)
    """What makes the figures less telling, e.g. a staging server on another PostgreSQL major."""
    copy_bytes: int = 0
    """The copy's expected size: the database size the backup recorded."""
    space_check: str = ""
    """What was checked about disk space before restoring (passed, failed, or not checked and why)."""
