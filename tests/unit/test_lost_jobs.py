"""A Job gone before its result was read: recorded when started, never re-run for a role that cannot repeat."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus
from dbops.api.roles import REPEATABLE_ROLES, JobRole
from dbops.api.status import MAX_STARTED_JOBS
from dbops.controller.effects import owned_by
from dbops.reconcile import backup as b
from dbops.reconcile import migration as m
from dbops.reconcile import restore as r
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
DB = {"uriSecretRef": {"name": "db", "key": "uri"}}
STORAGE = {"s3": {"bucket": "bkt"}}
OWNER = Owner("DatabaseRestore", "prod", "undo", "uid-1")
RESTORE = DatabaseRestoreSpec.model_validate({
    "source": {"backupRef": {"name": "nightly"}}, "target": {"database": DB}, "clean": True,
    "confirmOverwrite": "app", "jobTemplate": {"ttlSecondsAfterFinished": 0}})
SOURCE = r.RestoreSource("Ready", artifact_dir="s3://bkt/prod/app/nightly",
                         storage=DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE}).storage)


def restore_step(status: DatabaseRestoreStatus, job: JobOutcome) -> tuple[DatabaseRestoreStatus, m.Decision]:
    observed = r.RestoreObserved(SOURCE, ChildState("s"), job, "undo-restore-1")
    decision = r.reconcile_restore(RESTORE, status, observed, generation=1, now=NOW)
    assert isinstance(decision.status, DatabaseRestoreStatus)
    return decision.status, decision


def test_a_started_restore_job_is_recorded_and_never_started_again_once_lost() -> None:
    started, decision = restore_step(DatabaseRestoreStatus(), MISSING)
    assert [j.name for j in decision.jobs] == ["undo-restore-1"]
    assert [(j.name, j.role) for j in started.started_jobs] == [("undo-restore-1", "restore")]
    running, decision = restore_step(started, JobOutcome("Running"))
    assert running.phase == "Restoring" and decision.jobs == []

    lost, decision = restore_step(running, MISSING)
    assert decision.jobs == [], "a lost restore Job was started again: the target would be restored twice"
    assert lost.phase == "Failed"
    ready = lost.condition("Ready")
    assert ready is not None and ready.reason == "JobLost"
    assert "undo-restore-1" in ready.message and "re-create the DatabaseRestore" in ready.message
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "JobLost")]
    again, decision = restore_step(lost, MISSING)
    assert again.phase == "Failed" and decision.events == []


def test_a_lost_backup_job_starts_again_for_its_run_to_report_the_committed_artifact() -> None:
    spec = DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE})
    jobs = b.BackupJobs(MISSING, MISSING, "nightly-backup-1", "nightly-verify-1")
    first = b.reconcile_backup(spec, DatabaseBackupStatus(), jobs, generation=1, now=NOW)
    assert [j.name for j in first.jobs] == ["nightly-backup-1"] and first.status.attempts == 1
    again = b.reconcile_backup(spec, first.status, jobs, generation=1, now=NOW)  # the Job is gone unread
    assert [j.name for j in again.jobs] == ["nightly-backup-1"]
    assert again.status.phase == "Running" and again.status.attempts == 1
    assert ("Normal", "JobRestarted") in [(e.type, e.reason) for e in again.events]


def test_a_lost_apply_job_fails_the_migration_without_rolling_back() -> None:
    spec = DatabaseMigrationSpec.model_validate({
        "database": DB, "source": {"inline": [{"version": "1", "name": "a", "up": "select 1"}]},
        "preChecks": {"enabled": False}, "backup": {"enabled": True, "storage": STORAGE},
        "onFailure": "RestoreBackup"})
    names = {JobRole.PLAN: "m-plan-1", JobRole.CHECK: "m-check-1", JobRole.APPLY: "m-apply-1"}
    plan = JobOutcome("Succeeded", {"plan": {"hash": "abc", "pending": ["1"]}})

    def step(status: DatabaseMigrationStatus, apply: JobOutcome) -> m.Decision:
        observed = m.MigrationObserved("rev1", m.MigrationJobs(plan, MISSING, apply, names),
                                       ChildState("m-pre", "Succeeded"), ChildState("m-rollback"), None, "app")
        return m.reconcile_migration(spec, status, observed, generation=1, now=NOW)

    started = step(DatabaseMigrationStatus(source_hash="rev1"), MISSING)
    assert [j.name for j in started.jobs] == ["m-apply-1"]
    lost = step(started.status, MISSING)
    assert lost.jobs == [] and lost.children == [], "a lost apply Job was re-run or rolled back"
    assert lost.status.phase == "Failed" and lost.status.condition("Ready").reason == "JobLost"  # type: ignore[union-attr]


def test_only_roles_that_leave_the_target_as_it_was_or_recognise_their_run_repeat() -> None:
    assert {JobRole.RESTORE, JobRole.APPLY, JobRole.COMMAND}.isdisjoint(REPEATABLE_ROLES)
    assert {JobRole.BACKUP, JobRole.VERIFY, JobRole.PLAN, JobRole.CHECK} <= REPEATABLE_ROLES


def test_started_jobs_stay_bounded() -> None:
    status = DatabaseRestoreStatus()
    for index in range(MAX_STARTED_JOBS + 5):
        status.record_started(f"job-{index}", "smoke")
    assert len(status.started_jobs) == MAX_STARTED_JOBS and status.started_jobs[-1].name == f"job-{MAX_STARTED_JOBS + 4}"


def test_the_users_ttl_waits_for_the_operator_except_on_the_finalizers_delete_job() -> None:
    job = job_specs.build_restore_job(OWNER, RESTORE, SOURCE.storage, SOURCE.artifact_dir, image="i")  # type: ignore[arg-type]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["metadata"]["annotations"] == {job_specs.TTL_ANNOTATION: "0"}
    backup = DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE,
                                                "jobTemplate": {"ttlSecondsAfterFinished": 30}})
    delete = job_specs.build_delete_artifact_job(OWNER, backup, "s3://bkt/x", image="i")
    assert delete["spec"]["ttlSecondsAfterFinished"] == 600 and "annotations" not in delete["metadata"]
    plain = job_specs.build_backup_job(OWNER, DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE}),
                                       image="i")
    assert "annotations" not in plain["metadata"] and "ttlSecondsAfterFinished" not in plain["spec"]
    assert plain["spec"]["template"]["spec"]["containers"][0]["args"][:8] == [
        "backup", "--storage", "s3://bkt", "--name", "undo", "--namespace", "prod", "--run-id"]


@pytest.mark.parametrize(("metadata", "ours"), [
    ({"ownerReferences": [{"kind": "DatabaseRestore", "name": "undo", "uid": "uid-1"}]}, True),
    ({"ownerReferences": [{"kind": "DatabaseRestore", "name": "undo", "uid": "uid-0"}]}, False),  # an earlier undo
    ({"labels": {"dbops.io/kind": "DatabaseRestore", "dbops.io/name": "undo", "dbops.io/role": "restore"}}, True),
    ({"labels": {"app": "someone-elses"}}, False),
])
def test_an_existing_job_of_the_same_name_is_adopted_only_when_it_is_ours(metadata: dict[str, object],
                                                                           ours: bool) -> None:
    labels = {"dbops.io/kind": "DatabaseRestore", "dbops.io/name": "undo", "dbops.io/role": "restore"}
    assert owned_by(OWNER, {"metadata": metadata}, labels) is ours


def sql_run(spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus, plan: JobOutcome, apply: JobOutcome,
            *smoke: JobOutcome) -> m.Decision:
    names = {JobRole.PLAN: "m-plan-1", JobRole.CHECK: "m-check-1", JobRole.APPLY: "m-apply-1"}
    jobs = m.MigrationJobs(plan, MISSING, apply, names, smoke=smoke,
                           smoke_names=tuple(f"m-smoke-{i}" for i in range(len(smoke))))
    observed = m.MigrationObserved("rev1", jobs, ChildState("m-pre"), ChildState("m-rollback"), None, "app")
    return m.reconcile_migration(spec, status, observed, generation=1, now=NOW)


MIGRATION = {"database": DB, "source": {"inline": [{"version": "1", "name": "a", "up": "select 1"}]},
             "preChecks": {"enabled": False}}
PLANNED = JobOutcome("Succeeded", {"plan": {"hash": "abc", "pending": ["1"]}, "currentVersion": "0"})
APPLIED = JobOutcome("Succeeded", {"applied": [{"version": "1", "name": "a"}], "currentVersion": "1"})


def test_a_plan_job_deleted_while_awaiting_approval_is_not_planned_again_and_the_approval_holds() -> None:
    gated = DatabaseMigrationSpec.model_validate({**MIGRATION, "approval": {"mode": "Manual"}})
    planning = sql_run(gated, DatabaseMigrationStatus(source_hash="rev1"), MISSING, MISSING)
    waiting = sql_run(gated, planning.status, PLANNED, MISSING)
    assert waiting.status.phase == "AwaitingApproval" and waiting.status.plan.hash == "abc"  # type: ignore[union-attr]
    still = sql_run(gated, waiting.status, MISSING, MISSING)  # someone cleaned up the finished plan Job
    assert still.jobs == [] and still.status.phase == "AwaitingApproval"
    approved = gated.model_copy(update={"approval": gated.approval.model_copy(update={"approved_plan_hash": "abc"})})
    applying = sql_run(approved, still.status, MISSING, MISSING)
    assert [(j.role, j.params) for j in applying.jobs] == [(JobRole.APPLY, m.ApplyParams("abc"))]


def test_an_apply_job_deleted_during_the_smoke_tests_keeps_its_recorded_result() -> None:
    spec = DatabaseMigrationSpec.model_validate({**MIGRATION, "verify": {"jobs": [
        {"name": "probe", "image": "registry.example/app:1", "command": ["true"]}]}})
    status = sql_run(spec, DatabaseMigrationStatus(source_hash="rev1"), MISSING, MISSING).status
    status = sql_run(spec, status, PLANNED, MISSING).status
    smoking = sql_run(spec, status, PLANNED, APPLIED, MISSING)
    assert smoking.status.phase == "Verifying" and [j.role for j in smoking.jobs] == [JobRole.SMOKE]
    passed = JobOutcome("Succeeded", {}, "Succeeded", "passed")
    done = sql_run(spec, smoking.status, PLANNED, MISSING, passed)  # the apply Job was deleted meanwhile
    assert done.jobs == [] and done.status.phase == "Succeeded", done.status.message
    assert [a.version for a in done.status.applied] == ["1"] and done.status.current_version == "1"
