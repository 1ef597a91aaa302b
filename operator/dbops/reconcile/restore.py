"""Decisions for a DatabaseRestore: wait for the source backup, safety backup, restore Job, terminal phase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from dbops.api.backup import RestoreTestResult
from dbops.api.common import Storage
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus, RestoredFrom, RestorePhase
from dbops.api.roles import JobRole
from dbops.reconcile import results, retry
from dbops.reconcile.actions import ChildRequest, Decision, JobRequest, RestoreParams
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import JobOutcome
from dbops.reconcile.steps import WAIT_SECONDS, Steps


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


def retry_restore(status: DatabaseRestoreStatus, token: str | None, *, generation: int,
                  now: datetime) -> Decision | None:
    """A finished restore and its retry token (see dbops.reconcile.retry): a new attempt restores again, with a
    new safety backup of the target as the failed attempt left it (the earlier one is kept) and every check."""
    return retry.retry(status, token, lambda old: DatabaseRestoreStatus(), generation=generation, now=now,
                       children=(status.safety_backup_name,),
                       ignored="to restore again, create a new DatabaseRestore")


def reconcile_restore(spec: DatabaseRestoreSpec, status: DatabaseRestoreStatus, observed: RestoreObserved,
                      *, generation: int, now: datetime, token: str | None = None) -> Decision:
    """The next step of a restore (``token``: its dbops.io/retry annotation)."""
    status = status.model_copy(deep=True)
    if status.is_terminal:
        return retry_restore(status, token, generation=generation, now=now) or Decision(status)
    retry.begin(status, token)
    decision = Decision(status)
    steps = Steps(status, decision, generation=generation, now=now)
    source = observed.source
    if source.state == "Failed":
        steps.fail("BackupNotUsable", source.message, "RestoreFailed")
        return decision
    if source.state == "Waiting":
        steps.progress("Pending", "WaitingForBackup", source.message)
        decision.requeue_after = WAIT_SECONDS
        return decision
    if spec.safety_backup.enabled and not _safety_backup_done(spec, steps, status, observed.safety_backup):
        return decision
    restore = observed.restore
    assert source.storage is not None, "a Ready source names its storage"
    request = JobRequest(JobRole.RESTORE, observed.restore_job_name, RestoreParams(source.artifact_dir, source.storage))
    if steps.job_pending(restore, request, phase="Restoring", message=f"restoring from {source.artifact_dir}",
                         started="RestoreStarted"):
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
        steps.fail(restore.reason, restore.message, "RestoreFailed")
        return decision
    steps.succeed(f"restored {status.tables_restored or 0} tables from {source.artifact_dir}", "RestoreSucceeded")
    return decision


def _safety_backup_done(spec: DatabaseRestoreSpec, steps: Steps[RestorePhase], status: DatabaseRestoreStatus,
                        child: ChildState) -> bool:
    """Advance the safety backup of the target; True once it succeeded."""
    status.safety_backup_name = child.name
    request = ChildRequest("DatabaseBackup", child.name, safety_backup_spec(spec), owned=False)
    if steps.child_pending(child, request, phase="BackingUp", message=f"taking safety backup {child.name} of the target",
                           started="SafetyBackupStarted"):
        return False
    if child.phase == "Succeeded":
        return True
    steps.fail("SafetyBackupFailed", f"safety backup {child.name} failed: {child.message}", "RestoreFailed")
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
