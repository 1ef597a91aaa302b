"""Decisions for a DatabaseMigration's rehearsal: which backup to restore, the rehearsal Job, its report and gates.

Order (SQL sources): plan → [Automatic: pre-checks → pre-backup] → rehearsal → approval → pre-checks →
pre-backup → apply. With Automatic approval and ``backup.enabled`` the copy comes from the pre-migration backup
taken moments before; otherwise from ``rehearsal.backupRef`` or the newest verified backup of the same database,
so a manual approval never waits on (or rolls back to) a backup older than the approval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.common import Storage, parse_duration
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus, MigrationPhase
from dbops.api.migration_rehearsal import RehearsalReport, quantity_bytes
from dbops.api.roles import JobRole
from dbops.reconcile import results
from dbops.reconcile.actions import JobRequest, RehearseParams
from dbops.reconcile.backup import artifact_directory
from dbops.reconcile.jobs import JobOutcome
from dbops.reconcile.steps import WAIT_SECONDS, Steps

RehearsalSourceState = Literal["Ready", "Waiting", "Missing", "Failed"]


@dataclass(frozen=True)
class RehearsalSource:
    """The backup the copy is restored from, and whether it can be used."""

    state: RehearsalSourceState
    backup_name: str = ""
    artifact_dir: str = ""
    storage: Storage | None = None
    message: str = ""


@dataclass(frozen=True)
class RehearsalObserved:
    """The rehearsal Job of the current run and its source."""

    job: JobOutcome
    job_name: str
    source: RehearsalSource
    scratch_database: str = ""
    """The scratch database the Job creates and drops."""


def uses_pre_backup(spec: DatabaseMigrationSpec) -> bool:
    """Whether the copy comes from the pre-migration backup (taken before the rehearsal)."""
    return spec.rehearsal.backup_ref is None and spec.backup.enabled and spec.approval.mode == "Automatic"


def backup_source(name: str, body: Mapping[str, Any] | None) -> RehearsalSource:
    """The rehearsal source for one DatabaseBackup (by name; body None when it does not exist)."""
    if body is None:
        return RehearsalSource("Missing", name, message=f"DatabaseBackup {name} not found")
    status = DatabaseBackupStatus.model_validate(body.get("status") or {})
    if status.phase == "Failed":
        return RehearsalSource("Failed", name, message=f"DatabaseBackup {name} failed: {status.message}")
    if status.phase != "Succeeded" or status.artifact is None:
        return RehearsalSource("Waiting", name, message=f"waiting for DatabaseBackup {name} to succeed")
    storage = DatabaseBackupSpec.model_validate(body.get("spec") or {}).storage
    return RehearsalSource("Ready", name, artifact_dir_of(status), storage)


def artifact_dir_of(status: DatabaseBackupStatus) -> str:
    """The directory holding the backup's manifest.json."""
    assert status.artifact is not None
    return artifact_directory(status.artifact)


def newest_verified(spec: DatabaseMigrationSpec, bodies: Sequence[Mapping[str, Any]]) -> RehearsalSource:
    """The newest Succeeded and verified (decoded) DatabaseBackup of the same database among ``bodies``."""
    wanted = spec.database.to_wire()
    candidates = []
    for body in bodies:
        try:
            backup_spec = DatabaseBackupSpec.model_validate(body.get("spec") or {})
            status = DatabaseBackupStatus.model_validate(body.get("status") or {})
        except ValueError:
            continue  # not ours to judge here: its own reconcile reports it
        verified = status.verification is not None and status.verification.decoded
        if backup_spec.database.to_wire() == wanted and status.phase == "Succeeded" and status.artifact and verified:
            stamp = (status.completed_at.isoformat() if status.completed_at else "")
            candidates.append((stamp, str((body.get("metadata") or {}).get("name") or ""), backup_spec, status))
    if not candidates:
        return RehearsalSource("Missing", message=(
            "no Succeeded, verified DatabaseBackup of this database in the namespace to rehearse on: create one "
            "(or a DatabaseBackupSchedule), set rehearsal.backupRef, or enable backup with Automatic approval"))
    _, name, backup_spec, status = max(candidates, key=lambda item: (item[0], item[1]))
    return RehearsalSource("Ready", name, artifact_dir_of(status), backup_spec.storage)


def max_duration_seconds(spec: DatabaseMigrationSpec) -> float | None:
    """rehearsal.maxDuration, else the maintenance window's duration, else no limit."""
    text = spec.rehearsal.max_duration or (spec.window.duration if spec.window else None)
    return parse_duration(text) if text else None


def max_lock_bytes(spec: DatabaseMigrationSpec) -> int | None:
    """rehearsal.maxExclusiveLockTableSize in bytes, or no limit."""
    size = spec.rehearsal.max_exclusive_lock_table_size
    return quantity_bytes(size) if size else None


def available_space_bytes(spec: DatabaseMigrationSpec) -> int | None:
    """rehearsal.availableSpace in bytes, or None (not checked)."""
    size = spec.rehearsal.available_space
    return quantity_bytes(size) if size else None


def rehearsed(spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus, observed: RehearsalObserved,
              steps: Steps[MigrationPhase]) -> bool:
    """Rehearse the current plan once; True when it passed (for this plan hash), so the run may go on."""
    plan_hash = status.plan.hash if status.plan else ""
    report = status.rehearsal
    if report is not None and report.outcome == "Passed" and report.plan_hash == plan_hash and plan_hash:
        return True
    source, job = observed.source, observed.job
    if job.state == "Missing":
        if source.state in ("Missing", "Failed"):
            steps.fail("RehearsalBackupMissing" if source.state == "Missing" else "RehearsalBackupFailed",
                       source.message, "RehearsalFailed")
            return False
        if source.state == "Waiting":
            steps.progress("Rehearsing", "WaitingForBackup", source.message)
            steps.decision.requeue_after = WAIT_SECONDS
            return False
    params = RehearseParams(artifact_dir=source.artifact_dir, storage=source.storage, expect_plan_hash=plan_hash,
                            max_duration_seconds=max_duration_seconds(spec), max_lock_bytes=max_lock_bytes(spec),
                            available_space_bytes=available_space_bytes(spec))
    request = JobRequest(JobRole.REHEARSE, observed.job_name, params)
    message = f"rehearsing the plan on a copy restored from DatabaseBackup {source.backup_name}"
    if job.state == "Missing":
        status.rehearsal = RehearsalReport(plan_hash=plan_hash, backup=source.backup_name, job_name=observed.job_name,
                                           scratch_database=observed.scratch_database)
    if steps.job_pending(job, request, phase="Rehearsing", message=message):
        return False
    backup = status.rehearsal.backup if status.rehearsal else source.backup_name
    status.rehearsal = report_from_result(job.result.get("rehearsal"), job_name=observed.job_name, backup=backup)
    report = status.rehearsal
    if job.state == "Succeeded" and report.outcome == "Passed" and report.plan_hash == plan_hash:
        pending = len(status.plan.pending) if status.plan else 0
        steps.decision.event("Normal", "RehearsalPassed", rehearsal_summary(report, pending))
        return True
    report.outcome = "Blocked" if report.outcome == "Blocked" else "Failed"
    reason = job.reason if job.reason not in ("", "JobFailed", "Succeeded") else "RehearsalFailed"
    report.reason = report.reason or reason
    report.scratch_database = report.scratch_database or observed.scratch_database
    message = f"{job.message or 'the rehearsal failed'} (the database was not touched)"
    if not report.scratch_dropped and report.scratch_database:
        message += (f"; scratch database {report.scratch_database} may be left on the server: the next rehearsal of "
                    "this resource drops it, or drop it by hand")
    steps.fail(reason, message, "RehearsalBlocked" if report.outcome == "Blocked" else "RehearsalFailed")
    return False


def report_from_result(data: Any, *, job_name: str, backup: str) -> RehearsalReport:
    """The status report from the runner's ``rehearsal`` object (list entries a cut result lost are skipped)."""
    report = results.model_from_result(RehearsalReport, _without_markers(data)) or RehearsalReport(outcome="Failed")
    report.job_name, report.backup = job_name, report.backup or backup
    return report


def _without_markers(value: Any) -> Any:
    """The value without the ``... N more`` strings a shortened result leaves in lists."""
    if isinstance(value, Mapping):
        return {key: _without_markers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_markers(item) for item in value if not (isinstance(item, str) and item.startswith("... "))]
    return value


def rehearsal_summary(report: RehearsalReport, migrations: int) -> str:
    """One line for the Event and the approval message: migrations (the plan's count: a cut result lists fewer),
    time, rows, the largest exclusive lock."""
    text = (f"rehearsed {migrations} migrations on a copy of {report.backup} in "
            f"{report.duration_ms / 1000:.1f}s, {report.rows_touched} rows touched")
    lock = report.largest_exclusive_lock
    if lock is not None:
        text += (f"; largest ACCESS EXCLUSIVE lock: {lock.table} ({_mib(lock.table_bytes)}) for {lock.held_ms} ms "
                 f"in {lock.version}")
    return text


def _mib(value: int) -> str:
    return f"{value / (1 << 20):.1f} MiB"
