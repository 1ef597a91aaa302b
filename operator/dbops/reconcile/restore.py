"""Decisions for a DatabaseRestore: wait for the source backup, safety backup, restore Job, terminal phase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from dbops.api.backup import RestoreTestResult
from dbops.api.common import Storage
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus, RestoredFrom
from dbops.api.roles import JobRole
from dbops.reconcile import results
from dbops.reconcile.actions import ChildRequest, Decision, JobRequest, RestoreParams
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import JobOutcome

WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class RestoreSource:
    """Where the backup to restore stands: usable, not yet, or never."""

    state: Literal["Ready", "Waiting", "Failed"]
    artifact_dir: str = ""
    storage: Storage | None = None
    """The storage holding it."""
    sha256: str = ""
    backup_name: str | None = None
    message: str = ""


@dataclass(frozen=True)
class RestoreObserved:
    """What the controller read for one DatabaseRestore."""

    source: RestoreSource
    safety_backup: ChildState
    restore: JobOutcome
    restore_job_name: str


def safety_backup_spec(spec: DatabaseRestoreSpec) -> dict[str, Any]:
    """The DatabaseBackup spec of the safety backup of the target."""
    assert spec.safety_backup.storage is not None
    return {
        "database": spec.target.database.to_wire(),
        "storage": spec.safety_backup.storage.to_wire(),
        "deletionPolicy": "Retain",
    }


def reconcile_restore(spec: DatabaseRestoreSpec, status: DatabaseRestoreStatus, observed: RestoreObserved,
                      *, generation: int, now: datetime) -> Decision:
    """The next step of a restore."""
    status = status.model_copy(deep=True)
    decision = Decision(status)
    if status.is_terminal:
        return decision
    source = observed.source
    if source.state == "Failed":
        status.mark_failed("BackupNotUsable", source.message, generation=generation, now=now)
        decision.event("Warning", "RestoreFailed", source.message)
        return decision
    if source.state == "Waiting":
        status.mark_progressing("Pending", "WaitingForBackup", source.message, generation=generation, now=now)
        decision.requeue_after = WAIT_SECONDS
        return decision
    if spec.safety_backup.enabled and not _safety_backup_done(spec, status, observed.safety_backup, decision,
                                                             generation=generation, now=now):
        return decision
    restore = observed.restore
    if restore.state == "Missing":
        assert source.storage is not None, "a Ready source names its storage"
        decision.jobs.append(JobRequest(JobRole.RESTORE, observed.restore_job_name,
                                        RestoreParams(source.artifact_dir, source.storage)))
        status.job_name = observed.restore_job_name
        status.mark_progressing("Restoring", "Restoring", f"restoring from {source.artifact_dir}",
                                generation=generation, now=now)
        decision.event("Normal", "RestoreStarted", f"created restore Job {observed.restore_job_name}")
        return decision
    if restore.state == "Running":
        if status.phase != "Restoring":
            status.job_name = observed.restore_job_name
            status.mark_progressing("Restoring", "Restoring", f"restoring from {source.artifact_dir}",
                                    generation=generation, now=now)
        return decision
    result = restore.result
    restored = result.get("restoredFrom") or {}
    status.restored_from = RestoredFrom(uri=str(restored.get("uri") or restored.get("manifestUri") or
                                                source.artifact_dir),
                                        sha256=source.sha256, backup_name=source.backup_name)
    if isinstance(result.get("tablesRestored"), int):
        status.tables_restored = int(result["tablesRestored"])
    if isinstance(result.get("tables"), list):
        status.restored_tables = [str(table) for table in result["tables"]][:1024]
    status.verification = _verification(result.get("verification"))
    if restore.state == "Failed":
        status.mark_failed(restore.reason, restore.message, generation=generation, now=now)
        decision.event("Warning", "RestoreFailed", f"{restore.reason}: {restore.message}")
        return decision
    message = f"restored {status.tables_restored or 0} tables from {source.artifact_dir}"
    if status.mark_succeeded(message, generation=generation, now=now):
        decision.event("Normal", "RestoreSucceeded", message)
    return decision


def _safety_backup_done(spec: DatabaseRestoreSpec, status: DatabaseRestoreStatus, child: ChildState,
                        decision: Decision, *, generation: int, now: datetime) -> bool:
    status.safety_backup_name = child.name
    if not child.exists:
        decision.children.append(ChildRequest("DatabaseBackup", child.name, safety_backup_spec(spec), owned=False))
        status.mark_progressing("BackingUp", "BackingUp", f"taking safety backup {child.name} of the target",
                                generation=generation, now=now)
        decision.event("Normal", "SafetyBackupStarted", f"created DatabaseBackup {child.name}")
        return False
    if child.phase == "Succeeded":
        return True
    if child.finished:
        message = f"safety backup {child.name} failed: {child.message}"
        status.mark_failed("SafetyBackupFailed", message, generation=generation, now=now)
        decision.event("Warning", "RestoreFailed", message)
        return False
    if status.phase != "BackingUp":
        status.mark_progressing("BackingUp", "BackingUp", f"waiting for safety backup {child.name}",
                                generation=generation, now=now)
    decision.requeue_after = WAIT_SECONDS
    return False


def _verification(data: Any) -> RestoreTestResult | None:
    """Row counts and SQL checks of the restored database: passed only when both did."""
    if not isinstance(data, dict):
        return None
    row_counts = data.get("rowCounts")
    failed = results.failed_checks(data.get("checks"))
    if not isinstance(row_counts, dict) and not isinstance(data.get("checks"), list):
        return None
    counts = row_counts if isinstance(row_counts, dict) else {}
    mismatches = [str(m)[:1024] for m in counts.get("mismatches") or [] if isinstance(m, str)]
    tables = counts.get("tablesCompared")
    return RestoreTestResult(passed=bool(counts.get("passed", True)) and not failed,
                             tables_compared=tables if isinstance(tables, int) else 0,
                             mismatches=[*mismatches, *failed])
