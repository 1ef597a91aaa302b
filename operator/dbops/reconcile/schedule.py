"""Decisions for a DatabaseBackupSchedule: phase, last backups, and which backups retention prunes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dbops.api.schedule import (
    BackupReference,
    DatabaseBackupScheduleSpec,
    DatabaseBackupScheduleStatus,
    SchedulePhase,
)
from dbops.reconcile import retention, window
from dbops.reconcile.actions import Decision


@dataclass(frozen=True)
class ScheduledBackup:
    """One DatabaseBackup created by the schedule."""

    name: str
    phase: str
    created_at: datetime
    completed_at: datetime | None = None


def reconcile_schedule(spec: DatabaseBackupScheduleSpec, status: DatabaseBackupScheduleStatus,
                       backups: list[ScheduledBackup], *, cron_job_name: str, last_schedule_time: datetime | None,
                       generation: int, now: datetime) -> Decision:
    """The schedule's status and the backups to prune (Decision.delete) from its backups and CronJob."""
    window.fire_times(spec.schedule, spec.time_zone, now)  # InvalidSpec before a CronJob that never fires
    status = status.model_copy(deep=True)
    if status.is_terminal and status.observed_generation != generation:
        status.phase = "Pending"  # the spec changed since the CronJob was refused: try the new one
    decision = Decision(status)
    status.cron_job_name = cron_job_name
    status.last_schedule_time = last_schedule_time or status.last_schedule_time
    ordered = sorted(backups, key=lambda b: (b.created_at, b.name))
    if ordered:
        last = ordered[-1]
        status.last_backup = BackupReference(name=last.name, phase=last.phase, completed_at=last.completed_at)
    succeeded = [b for b in ordered if b.phase == "Succeeded" and b.completed_at is not None]
    if succeeded:
        best = max(succeeded, key=lambda b: (b.completed_at or b.created_at, b.name))
        status.last_successful_backup = BackupReference(name=best.name, phase=best.phase,
                                                        completed_at=best.completed_at)
    selection = retention.select_backups_to_prune(
        [(b.name, b.completed_at) for b in succeeded], retention.RetentionPolicy.from_model(spec.retention), now)
    pruned = set(selection.prune)
    for name in sorted(pruned):
        decision.delete.append({"kind": "DatabaseBackup", "name": name})
        decision.event("Normal", "BackupPruned", f"retention prunes DatabaseBackup {name}")
    status.retained_backups = len([b for b in succeeded if b.name not in pruned])
    status.pruned_backups += len(pruned)
    phase: SchedulePhase = "Suspended" if spec.suspend else "Active"
    message = f"{status.retained_backups} backups retained" + (" (suspended)" if spec.suspend else "")
    if status.is_terminal:
        return decision  # the CronJob was refused; only a spec change (a new generation) tries again
    if status.phase != phase or status.observed_generation != generation or status.message != message:
        status.mark_progressing(phase, phase, message, generation=generation, now=now)
    return decision
