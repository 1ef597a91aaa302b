"""Decisions for a DatabaseBackupSchedule: phase, last backups, runs that cannot start, and retention's prunes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dbops.api.schedule import (
    BackupReference,
    DatabaseBackupScheduleSpec,
    DatabaseBackupScheduleStatus,
    SchedulePhase,
    StartFailure,
)
from dbops.reconcile import retention, window
from dbops.reconcile.actions import Decision
from dbops.reconcile.pod_start import StartProblem

WAIT_SECONDS = 10.0
"""How soon to look again at a run whose pod waits (its progress sends the schedule no event)."""


@dataclass(frozen=True)
class ScheduledBackup:
    """One DatabaseBackup created by the schedule."""

    name: str
    phase: str
    created_at: datetime
    completed_at: datetime | None = None


@dataclass(frozen=True)
class ScheduledRun:
    """A Job of the schedule's CronJob that has not finished, and why its pod has not started (None: it did, or
    it is starting normally)."""

    job_name: str
    created_at: datetime
    problem: StartProblem | None = None


def _runs(status: DatabaseBackupScheduleStatus, decision: Decision, runs: list[ScheduledRun],
          backups: list[ScheduledBackup], last_successful_time: datetime | None, now: datetime) -> tuple[str, str] | None:
    """Record and report the runs whose pod cannot start; the (reason, message) to show, or None.

    A run whose pod can never start (pod_start: after the start grace, or at once) is recorded in
    lastStartFailure with a Warning Event, and its Job deleted: no pod stays pending, and under the CronJob's
    concurrencyPolicy Forbid (the default) the stuck Job would hold back every later run until its
    activeDeadlineSeconds. Ready=False shows it until a later run succeeded (the CronJob's lastSuccessfulTime
    or a backup created after it); the record then stays with recoveredAt. A run that waits (within the grace,
    or unschedulable) is shown while it waits."""
    for run in sorted(runs, key=lambda r: (r.created_at, r.job_name)):
        if run.problem is None or not run.problem.terminal:
            continue
        decision.delete.append({"apiVersion": "batch/v1", "kind": "Job", "name": run.job_name,
                                "propagation": "Foreground"})
        failure = status.last_start_failure
        if failure is None or failure.job_name != run.job_name:
            status.last_start_failure = StartFailure(job_name=run.job_name, reason=run.problem.reason,
                                                     message=run.problem.message, created_at=run.created_at)
            decision.event("Warning", run.problem.reason, f"scheduled run: {run.problem.message}; Job {run.job_name} "
                           "deleted, the next scheduled run tries again")
    failure = status.last_start_failure
    if failure is not None and failure.recovered_at is not None:
        failure = None
    if failure is not None and (
            (last_successful_time is not None and last_successful_time > failure.created_at)
            or any(backup.created_at > failure.created_at for backup in backups)):
        status.last_start_failure = failure.model_copy(update={"recovered_at": now})
        decision.event("Normal", "RunRecovered", f"a scheduled run after Job {failure.job_name} ({failure.reason}) "
                                                 "succeeded")
        failure = None
    waiting = [run for run in runs if run.problem is not None and not run.problem.terminal]
    if waiting:
        run = max(waiting, key=lambda r: (r.created_at, r.job_name))
        assert run.problem is not None
        decision.requeue_after = WAIT_SECONDS
        return run.problem.reason, f"scheduled run: {run.problem.message}"
    if failure is not None:
        return failure.reason, (f"scheduled run: {failure.message}; Job {failure.job_name} deleted, the next "
                                "scheduled run tries again")
    return None


def reconcile_schedule(spec: DatabaseBackupScheduleSpec, status: DatabaseBackupScheduleStatus,
                       backups: list[ScheduledBackup], *, cron_job_name: str, last_schedule_time: datetime | None,
                       generation: int, now: datetime, runs: list[ScheduledRun] | None = None,
                       last_successful_time: datetime | None = None) -> Decision:
    """The schedule's status, the backups to prune and the stuck run Jobs to delete (Decision.delete) from its
    backups, its CronJob's unfinished runs and the CronJob's lastSuccessfulTime."""
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
    problem = _runs(status, decision, runs or [], ordered, last_successful_time, now)
    reason, message = problem if problem is not None else (phase, message)
    ready = status.condition("Ready")
    if (status.phase != phase or status.observed_generation != generation or status.message != message
            or ready is None or ready.reason != reason):
        if problem is not None and not any(e.reason == reason for e in decision.events) and (
                ready is None or ready.reason != reason):
            decision.event("Warning", reason, message)  # a run that waits: shown once, as on the pod
        status.mark_progressing(phase, reason, message, generation=generation, now=now)
    return decision
