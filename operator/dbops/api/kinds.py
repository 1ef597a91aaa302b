"""The four kinds: names, specs, statuses, printer columns and short names, in one table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.base import ApiModel
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus
from dbops.api.schedule import DatabaseBackupScheduleSpec, DatabaseBackupScheduleStatus
from dbops.api.status import ResourceStatus

CATEGORY = "dbops"


@dataclass(frozen=True)
class Kind:
    """One custom resource kind of the API."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[ApiModel]
    status: type[ResourceStatus[Any]]
    printer_columns: tuple[dict[str, Any], ...] = field(default=())

    @property
    def singular(self) -> str:
        """Lower-case singular name."""
        return self.kind.lower()


def _column(name: str, path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


_PHASE = _column("Phase", ".status.phase")
_READY = _column("Ready", '.status.conditions[?(@.type=="Ready")].status')
_AGE = _column("Age", ".metadata.creationTimestamp", "date")
_MESSAGE = _column("Message", ".status.message", priority=1)

BACKUP = Kind(
    "DatabaseBackup", "databasebackups", ("dbbackup", "dbb"), DatabaseBackupSpec, DatabaseBackupStatus,
    (_PHASE, _column("Database", ".spec.database.name"), _column("Size", ".status.artifact.sizeBytes", "integer"),
     _READY, _AGE, _MESSAGE),
)
SCHEDULE = Kind(
    "DatabaseBackupSchedule", "databasebackupschedules", ("dbschedule", "dbbs"),
    DatabaseBackupScheduleSpec, DatabaseBackupScheduleStatus,
    (_PHASE, _column("Schedule", ".spec.schedule"), _column("Last Backup", ".status.lastBackup.name"),
     _column("Retained", ".status.retainedBackups", "integer"), _AGE, _MESSAGE),
)
MIGRATION = Kind(
    "DatabaseMigration", "databasemigrations", ("dbmigration", "dbm"), DatabaseMigrationSpec, DatabaseMigrationStatus,
    (_PHASE, _column("Database", ".spec.database.name"), _column("Version", ".status.currentVersion"),
     _READY, _AGE, _MESSAGE),
)
RESTORE = Kind(
    "DatabaseRestore", "databaserestores", ("dbrestore", "dbr"), DatabaseRestoreSpec, DatabaseRestoreStatus,
    (_PHASE, _column("Target", ".spec.target.database.name"), _column("Mode", ".spec.mode"), _READY, _AGE, _MESSAGE),
)

ALL_KINDS: tuple[Kind, ...] = (BACKUP, SCHEDULE, MIGRATION, RESTORE)
