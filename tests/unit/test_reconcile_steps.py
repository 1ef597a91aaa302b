"""The shared steps (start a Job or wait for it, create a child or wait for it) behave the same for every kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus
from dbops.api.status import JobStatus
from dbops.reconcile import backup as b
from dbops.reconcile import migration as m
from dbops.reconcile import restore as r
from dbops.reconcile.actions import ChildRequest, Decision, JobRequest
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome, job_outcome
from dbops.reconcile.steps import WAIT_SECONDS, Steps

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
DB = {"uriSecretRef": {"name": "db", "key": "uri"}}
STORAGE = {"s3": {"bucket": "bkt"}}
RUNNING = JobOutcome("Running")


def finished(result: dict[str, Any], ok: bool = True) -> JobOutcome:
    job = {"status": {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}]}}
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {
        "exitCode": 0 if ok else 2, "message": json.dumps(result)}}}]}}
    return job_outcome(job, [pod])


FAILED = finished({"ok": False, "reason": "AuthenticationFailed", "message": "password authentication failed"},
                  ok=False)
BACKUP_RESULT = finished({"ok": True, "artifact": {"uri": "s3://bkt/ns/app/b1/dump.zst", "sizeBytes": 1}})
PLAN_RESULT = finished({"plan": {"hash": "abcdef0123456789", "pending": ["1"]}})

BACKUP = DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE})
RESTORE = DatabaseRestoreSpec.model_validate({"source": {"backupRef": {"name": "nightly"}},
                                              "target": {"database": DB}, "clean": True, "confirmOverwrite": "app",
                                              "safetyBackup": {"enabled": True, "storage": STORAGE}})
NO_SAFETY = RESTORE.model_copy(update={"safety_backup": RESTORE.safety_backup.model_copy(update={"enabled": False})})
READY = r.RestoreSource("Ready", artifact_dir="s3://bkt/ns/app/nightly", storage=RESTORE.safety_backup.storage)
MIGRATION = DatabaseMigrationSpec.model_validate({
    "database": DB, "source": {"inline": [{"version": "1", "name": "a", "up": "select 1"}]},
    "preChecks": {"enabled": False}, "backup": {"enabled": True, "storage": STORAGE}, "onFailure": "RestoreBackup"})
ABORT = MIGRATION.model_copy(update={"on_failure": "Abort"})
NAMES = {"plan": "m-plan-1", "check": "m-check-1", "apply": "m-apply-1"}


def migration_observed(plan: JobOutcome = MISSING, apply: JobOutcome = MISSING, backup: ChildState | None = None,
                       restore: ChildState | None = None) -> m.MigrationObserved:
    return m.MigrationObserved("rev1", m.MigrationJobs(plan, MISSING, apply, NAMES), backup or ChildState("m-pre"),
                               restore or ChildState("m-rollback"), None, "app")


@dataclass(frozen=True)
class JobCase:
    """One kind's Job step: how to reconcile with the Job in a given state, and what the step must show."""

    reconcile: Callable[[JobStatus, JobOutcome], Decision]
    status: JobStatus
    job: str
    phase: str
    started: str


JOB_CASES = {
    "backup": JobCase(
        lambda status, job: b.reconcile_backup(BACKUP, status, b.BackupJobs(job, MISSING, "b1-backup-1", "b1-verify-1"),
                                               generation=1, now=NOW),
        DatabaseBackupStatus(), "b1-backup-1", "Running", "BackupStarted"),
    "backup verify": JobCase(
        lambda status, job: b.reconcile_backup(BACKUP, status, b.BackupJobs(BACKUP_RESULT, job, "b1-backup-1",
                                                                            "b1-verify-1"), generation=1, now=NOW),
        DatabaseBackupStatus(phase="Running"), "b1-verify-1", "Verifying", "VerificationStarted"),
    "restore": JobCase(
        lambda status, job: r.reconcile_restore(NO_SAFETY, status, r.RestoreObserved(
            READY, ChildState("x-safety"), job, "x-restore-1"), generation=1, now=NOW),
        DatabaseRestoreStatus(), "x-restore-1", "Restoring", "RestoreStarted"),
    "migration plan": JobCase(
        lambda status, job: m.reconcile_migration(MIGRATION, status, migration_observed(plan=job),
                                                  generation=1, now=NOW),
        DatabaseMigrationStatus(source_hash="rev1"), "m-plan-1", "Planning", "PlanningStarted"),
    "migration apply": JobCase(
        lambda status, job: m.reconcile_migration(ABORT, status, migration_observed(
            plan=PLAN_RESULT, apply=job, backup=ChildState("m-pre", "Succeeded")), generation=1, now=NOW),
        DatabaseMigrationStatus(source_hash="rev1", phase="BackingUp"), "m-apply-1", "Migrating", "MigratingStarted"),
}


@pytest.mark.parametrize("case", JOB_CASES.values(), ids=JOB_CASES.keys())
def test_a_missing_job_is_asked_for_once_with_an_event_and_its_phase(case: JobCase) -> None:
    decision = case.reconcile(case.status, MISSING)
    assert [job.name for job in decision.jobs] == [case.job]
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", case.started)]
    assert isinstance(decision.status, JobStatus)
    assert (decision.status.phase, decision.status.job_name) == (case.phase, case.job)
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.status == "False" and ready.reason == case.phase


@pytest.mark.parametrize("case", JOB_CASES.values(), ids=JOB_CASES.keys())
def test_a_running_job_is_not_asked_for_again_and_a_recheck_changes_nothing(case: JobCase) -> None:
    started = case.reconcile(case.status, MISSING).status
    decision = case.reconcile(started, RUNNING)
    assert decision.jobs == [] and decision.events == []
    assert decision.status == started  # nothing to write: no status churn on every re-check


@pytest.mark.parametrize("case", JOB_CASES.values(), ids=JOB_CASES.keys())
def test_a_running_job_found_without_status_is_adopted(case: JobCase) -> None:
    """The operator restarted before it wrote status: the Job is adopted and shown, not created again."""
    decision = case.reconcile(case.status, RUNNING)
    assert decision.jobs == [] and decision.events == []
    assert isinstance(decision.status, JobStatus)
    assert (decision.status.phase, decision.status.job_name) == (case.phase, case.job)


@pytest.mark.parametrize("case", JOB_CASES.values(), ids=JOB_CASES.keys())
def test_a_failed_job_fails_the_resource_with_its_reason_and_a_warning(case: JobCase) -> None:
    started = case.reconcile(case.status, MISSING).status
    decision = case.reconcile(started, FAILED)
    assert decision.jobs == [] and decision.status.phase == "Failed"
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.reason == "AuthenticationFailed"
    assert [e.type for e in decision.events] == ["Warning"]


@dataclass(frozen=True)
class ChildCase:
    """One kind's child step."""

    reconcile: Callable[[JobStatus, ChildState], Decision]
    status: JobStatus
    child: str
    kind: str
    phase: str
    failed: str


CHILD_CASES = {
    "restore safety backup": ChildCase(
        lambda status, child: r.reconcile_restore(RESTORE, status, r.RestoreObserved(READY, child, MISSING, "x-r-1"),
                                                  generation=1, now=NOW),
        DatabaseRestoreStatus(), "x-safety", "DatabaseBackup", "BackingUp", "SafetyBackupFailed"),
    "migration pre-backup": ChildCase(
        lambda status, child: m.reconcile_migration(MIGRATION, status, migration_observed(plan=PLAN_RESULT,
                                                                                          backup=child),
                                                    generation=1, now=NOW),
        DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), "m-pre", "DatabaseBackup", "BackingUp",
        "BackupFailed"),
    "migration rollback": ChildCase(
        lambda status, child: m.reconcile_migration(MIGRATION, status, migration_observed(
            plan=PLAN_RESULT, apply=FAILED, backup=ChildState("m-pre", "Succeeded"), restore=child),
            generation=1, now=NOW),
        DatabaseMigrationStatus(source_hash="rev1", phase="Migrating"), "m-rollback", "DatabaseRestore",
        "RollingBack", "RollbackFailed"),
}


@pytest.mark.parametrize("case", CHILD_CASES.values(), ids=CHILD_CASES.keys())
def test_a_missing_child_is_asked_for_and_a_working_one_is_waited_for(case: ChildCase) -> None:
    decision = case.reconcile(case.status, ChildState(case.child))
    assert [(c.kind, c.name) for c in decision.children] == [(case.kind, case.child)]
    assert decision.jobs == [] and decision.status.phase == case.phase
    started = decision.status
    waiting = case.reconcile(started, ChildState(case.child, "Running"))
    assert waiting.children == [] and waiting.jobs == [] and waiting.events == []
    assert waiting.status == started
    assert waiting.requeue_after == WAIT_SECONDS  # a child's progress sends the parent no event of its own


@pytest.mark.parametrize("case", CHILD_CASES.values(), ids=CHILD_CASES.keys())
def test_a_failed_child_fails_the_parent_naming_it(case: ChildCase) -> None:
    started = case.reconcile(case.status, ChildState(case.child)).status
    decision = case.reconcile(started, ChildState(case.child, "Failed", "no space left on device"))
    assert decision.status.phase == "Failed" and decision.children == [] and decision.jobs == []
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.reason == case.failed
    assert case.child in decision.status.message and "no space left on device" in decision.status.message
    assert [e.type for e in decision.events] == ["Warning"]


def test_steps_report_progress_only_when_something_changed() -> None:
    status = DatabaseBackupStatus()
    steps = Steps(status, Decision(status), generation=1, now=NOW)
    steps.progress("Running", "Running", "backing up")
    first = status.model_copy(deep=True)
    Steps(status, Decision(status), generation=1, now=datetime(2026, 11, 25, 3, 0, tzinfo=UTC)).progress(
        "Running", "Running", "backing up")
    assert status == first  # lastTransitionTime kept, nothing to write


def test_a_finished_job_or_child_asks_for_nothing() -> None:
    status = DatabaseBackupStatus(phase="Running")
    decision = Decision(status)
    steps = Steps(status, decision, generation=1, now=NOW)
    assert not steps.job_pending(BACKUP_RESULT, JobRequest(b.JobRole.BACKUP, "j"), phase="Running", message="m")
    assert not steps.child_pending(ChildState("c", "Succeeded"), ChildRequest("DatabaseBackup", "c", {}),
                                   phase="BackingUp", message="m")
    assert (decision.jobs, decision.children, decision.events, decision.requeue_after) == ([], [], [], None)
    assert status.phase == "Running"
