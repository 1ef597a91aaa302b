"""The dbops.io/retry annotation: a Failed or RolledBack resource runs again once per token, with new Job names,
every step again and its earlier runs kept in status; a Succeeded one never; a running one once it ended."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests import argocd

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus
from dbops.api.roles import JobRole
from dbops.api.status import MAX_PREVIOUS_ATTEMPTS, RETRY_ANNOTATION
from dbops.reconcile import backup as b
from dbops.reconcile import migration as m
from dbops.reconcile import migration_runs, retry
from dbops.reconcile import restore as r
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome, job_outcome
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner

NOW = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
DB = {"uriSecretRef": {"name": "db", "key": "uri"}}
STORAGE = {"s3": {"bucket": "bkt"}}
OWNER = Owner("DatabaseRestore", "prod", "undo", "uid-1")
RESTORE = DatabaseRestoreSpec.model_validate({"source": {"backupRef": {"name": "nightly"}},
                                              "target": {"database": DB}, "clean": True, "confirmOverwrite": "app"})
SOURCE = r.RestoreSource("Ready", artifact_dir="s3://bkt/prod/app/nightly",
                         storage=DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE}).storage)


def done(result: dict[str, Any], ok: bool = True) -> JobOutcome:
    job = {"status": {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}]}}
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0 if ok else 1,
                                                                        "message": json.dumps(result)}}}]}}
    return job_outcome(job, [pod])


def restore_name(status: DatabaseRestoreStatus) -> str:
    """The restore Job's name as the controller derives it from status (dbops.controller.restore)."""
    return job_specs.job_name(OWNER, JobRole.RESTORE, *retry.run_parts(status.attempt))


def restore_pass(status: DatabaseRestoreStatus, job: JobOutcome, token: str | None = None,
                 *, now: datetime = NOW) -> Any:
    observed = r.RestoreObserved(SOURCE, ChildState("s"), job, restore_name(status))
    return r.reconcile_restore(RESTORE, status, observed, generation=1, now=now, token=token)


def lost_restore(token: str | None = None) -> DatabaseRestoreStatus:
    """A restore whose Job vanished before its result was read (JobLost), the token as given from the start."""
    started = restore_pass(DatabaseRestoreStatus(), MISSING, token).status
    running = restore_pass(started, JobOutcome("Running"), token).status
    lost = restore_pass(running, MISSING, token, now=NOW + timedelta(minutes=3)).status
    assert lost.phase == "Failed" and lost.condition("Ready").reason == "JobLost"
    return lost


def test_a_lost_restore_retried_starts_a_new_attempt_with_new_job_names_and_keeps_the_first() -> None:
    lost = lost_restore()
    assert lost.attempts == 1 and lost.last_retry_token is None
    decision = restore_pass(lost, MISSING, "2026-11-30T05:10")
    status = decision.status
    assert decision.jobs == [] and decision.children == [], "the retry pass only writes the new attempt"
    assert status.phase == "Pending" and status.attempts == 2 and status.last_retry_token == "2026-11-30T05:10"
    assert status.condition("Failed") is None, "the new run has not failed"
    ready = status.condition("Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "RetryRequested"
    assert status.started_jobs == [] and status.completed_at is None and status.started_at is None
    [previous] = status.previous_attempts
    assert (previous.attempt, previous.phase, previous.reason) == (1, "Failed", "JobLost")
    assert previous.jobs == [restore_name(lost)] and previous.retry_token == "2026-11-30T05:10"
    assert previous.finished_at == NOW + timedelta(minutes=3)
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "RetryStarted")]
    assert "attempt 2" in decision.events[0].message and "JobLost" in decision.events[0].message
    assert decision.requeue_after is not None

    second = restore_pass(status, MISSING, "2026-11-30T05:10")
    assert [j.name for j in second.jobs] == [restore_name(status)]
    assert restore_name(status) != restore_name(lost), "the retry would adopt the lost attempt's Job"
    assert restore_name(status) == job_specs.job_name(OWNER, JobRole.RESTORE, 2), "not deterministic per attempt"
    assert second.status.phase == "Restoring" and second.status.attempts == 2


def test_the_same_token_twice_runs_once() -> None:
    lost = lost_restore()
    retried = restore_pass(lost, MISSING, "t1").status
    running = restore_pass(retried, MISSING, "t1").status
    failed = restore_pass(running, done({"message": "boom"}, ok=False), "t1").status
    assert failed.phase == "Failed" and failed.attempts == 2
    again = restore_pass(failed, MISSING, "t1")
    assert again.status == failed and again.events == [] and again.jobs == []
    assert r.retry_restore(failed, "t1", generation=1, now=NOW) is None
    third = restore_pass(failed, MISSING, "t2").status
    assert third.attempts == 3 and [p.attempt for p in third.previous_attempts] == [1, 2]


def test_a_succeeded_resource_is_never_run_again_and_says_why_once() -> None:
    started = restore_pass(DatabaseRestoreStatus(), MISSING).status
    succeeded = restore_pass(started, done({"tablesRestored": 3})).status
    assert succeeded.phase == "Succeeded"
    decision = restore_pass(succeeded, MISSING, "again")
    assert decision.status.phase == "Succeeded" and decision.jobs == [] and decision.status.attempts == 1
    assert decision.status.last_retry_token == "again" and decision.status.previous_attempts == []
    [event] = decision.events
    assert (event.type, event.reason) == ("Normal", "RetryIgnored")
    assert "Succeeded" in event.message and "create a new DatabaseRestore" in event.message
    assert restore_pass(decision.status, MISSING, "again").events == [], "the Event is repeated for one token"


def test_a_token_set_while_running_waits_for_the_end_and_one_there_from_the_start_is_the_first_runs() -> None:
    assert lost_restore("from-git").last_retry_token == "from-git"
    assert restore_pass(lost_restore("from-git"), MISSING, "from-git").status.phase == "Failed", \
        "a manifest carrying the annotation from the start retried a failure nobody looked at"
    started = restore_pass(DatabaseRestoreStatus(), MISSING).status
    running = restore_pass(started, JobOutcome("Running"), "during").status
    assert running.phase == "Restoring" and running.attempts == 1 and running.last_retry_token is None
    failed = restore_pass(running, done({}, ok=False), "during").status
    assert failed.phase == "Failed"
    assert restore_pass(failed, MISSING, "during").status.attempts == 2


def test_previous_attempts_are_bounded() -> None:
    status = lost_restore()
    for attempt in range(2, MAX_PREVIOUS_ATTEMPTS + 5):
        status = restore_pass(status, MISSING, f"t{attempt}").status
        status.mark_failed("RestoreFailed", "again", now=NOW)
    assert status.attempts == MAX_PREVIOUS_ATTEMPTS + 4
    assert len(status.previous_attempts) == MAX_PREVIOUS_ATTEMPTS
    assert status.previous_attempts[-1].attempt == MAX_PREVIOUS_ATTEMPTS + 3
    DatabaseRestoreStatus.model_validate(status.to_wire())  # the CRD's maxItems holds


def test_pending_reads_the_annotation_against_status() -> None:
    def body(token: str | None, phase: str, last: str | None = None) -> dict[str, Any]:
        annotations = {RETRY_ANNOTATION: token} if token is not None else {}
        return {"metadata": {"annotations": annotations}, "status": {"phase": phase, "lastRetryToken": last}}

    assert retry.pending(body("1", "Failed")) and retry.pending(body("2", "Succeeded", "1"))
    assert not retry.pending(body("1", "Failed", "1")) and not retry.pending(body(None, "Failed"))
    assert not retry.pending(body("", "RolledBack")) and not retry.pending(body("1", "Restoring"))
    assert retry.token_of({"metadata": {"annotations": {RETRY_ANNOTATION: "x" * 999}}}) == "x" * 256


def test_a_failed_backup_retried_takes_a_new_backup_job() -> None:
    spec = DatabaseBackupSpec.model_validate({"database": DB, "storage": STORAGE, "verify": {"decode": False}})

    def backup_pass(status: DatabaseBackupStatus, job: JobOutcome, token: str | None = None) -> Any:
        parts = retry.run_parts(status.attempt)
        names = b.BackupJobs(job, MISSING, f"nightly-backup-{'-'.join(map(str, parts)) or 1}", "nightly-verify")
        return b.reconcile_backup(spec, status, names, generation=1, now=NOW, token=token)

    started = backup_pass(DatabaseBackupStatus(), MISSING).status
    assert started.attempts == 1
    failed = backup_pass(started, done({}, ok=False)).status
    assert failed.phase == "Failed"
    retried = backup_pass(failed, MISSING, "x").status
    assert retried.phase == "Pending" and retried.attempts == 2 and retried.previous_attempts[0].phase == "Failed"
    again = backup_pass(retried, MISSING, "x")
    assert [j.name for j in again.jobs] == ["nightly-backup-2"] and again.status.attempts == 2


MIGRATION = {"database": DB, "source": {"inline": [{"version": "1", "name": "a", "up": "select 1"}]}}
NAMES = {"plan": "m-plan", "check": "m-check", "apply": "m-apply"}


def plan(plan_hash: str) -> JobOutcome:
    return done({"plan": {"hash": plan_hash, "pending": ["1"], "lint": [], "destructive": False},
                 "currentVersion": ""})


def migration_pass(spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus, token: str | None = None, *,
                   revision: str = "rev1", **jobs: JobOutcome) -> Any:
    attempt = migration_runs.run_attempt(status, revision)
    names = {role: f"{name}-{retry.run_key(revision, attempt)}" for role, name in NAMES.items()}
    observed = m.MigrationObserved(revision, m.MigrationJobs(jobs.get("plan", MISSING), jobs.get("check", MISSING),
                                                             jobs.get("apply", MISSING), names),
                                   ChildState(f"pre-{attempt}"), ChildState(f"rb-{attempt}"), None, "app")
    return m.reconcile_migration(spec, status, observed, generation=1, now=NOW, token=token)


def failed_migration(spec: DatabaseMigrationSpec) -> DatabaseMigrationStatus:
    status = migration_pass(spec, DatabaseMigrationStatus()).status
    status = migration_pass(spec, status, plan=plan("0123456789abcdef")).status
    assert status.phase != "AwaitingApproval", status.message
    status = migration_pass(spec, status, plan=plan("0123456789abcdef")).status  # the apply Job is asked for
    status = migration_pass(spec, status, plan=plan("0123456789abcdef"),
                            apply=done({"message": "relation missing", "currentVersion": None}, ok=False)).status
    assert status.phase == "Failed", status.message
    return status


def test_a_failed_migration_retried_plans_again_and_needs_approval_when_the_plan_changed() -> None:
    spec = DatabaseMigrationSpec.model_validate({
        **MIGRATION, "preChecks": {"enabled": False},
        "approval": {"mode": "Manual", "approvedPlanHash": "0123456789abcdef"}})
    failed = failed_migration(spec)
    failed.current_version = "0"
    decision = migration_pass(spec, failed, "retry-1")
    retried = decision.status
    assert retried.attempts == 2 and retried.phase == "Pending" and decision.jobs == []
    assert retried.source_hash == "rev1" and retried.current_version == "0" and retried.plan is None
    assert migration_runs.run_attempt(retried, "rev1") == 2
    planning = migration_pass(spec, retried, "retry-1")
    assert [j.name for j in planning.jobs] == ["m-plan-rev1.2"], "the retry did not plan again under a new name"
    # The database moved (a lost apply committed part of it): the plan differs and the old approval does not hold.
    waiting = migration_pass(spec, planning.status, "retry-1", plan=plan("fedcba9876543210")).status
    assert waiting.phase == "AwaitingApproval" and "fedcba9876543210" in waiting.message
    same = migration_pass(spec, planning.status, "retry-1", plan=plan("0123456789abcdef"))
    assert same.status.phase != "AwaitingApproval" and [j.role for j in same.jobs] == ["apply"]
    assert same.jobs[0].name == "m-apply-rev1.2" and same.jobs[0].params.expect_plan_hash == "0123456789abcdef"


def test_a_new_revision_is_the_next_attempt_and_keeps_the_replaced_run() -> None:
    spec = DatabaseMigrationSpec.model_validate({**MIGRATION, "preChecks": {"enabled": False}})
    failed = failed_migration(spec)
    assert migration_runs.run_attempt(failed, "rev2") == 2
    fixed = migration_pass(spec, failed, revision="rev2")  # the bad statement fixed in the source
    assert fixed.status.attempts == 2 and fixed.status.source_hash == "rev2"
    assert [j.name for j in fixed.jobs] == ["m-plan-rev2.2"]
    [previous] = fixed.status.previous_attempts
    assert (previous.attempt, previous.phase, previous.ended_by, previous.source_hash) == (
        1, "Failed", "NewRevision", "rev1")

    retried = migration_pass(spec, failed, "a").status
    assert migration_runs.run_attempt(retried, "rev3") == 2, "a retry that had not started work is no attempt of its own"
    fresh = migration_pass(spec, retried, "b", revision="rev3")
    assert fresh.status.attempts == 2 and fresh.status.source_hash == "rev3"
    assert fresh.status.last_retry_token == "b", "a new revision's run consumes the token it came with"
    assert [p.ended_by for p in fresh.status.previous_attempts] == ["Retry"]
    assert [j.name for j in fresh.jobs] == ["m-plan-rev3.2"]


def test_a_succeeded_migration_ignores_the_token() -> None:
    spec = DatabaseMigrationSpec.model_validate({**MIGRATION, "preChecks": {"enabled": False}})
    status = migration_pass(spec, DatabaseMigrationStatus()).status
    status = migration_pass(spec, status, plan=plan("h")).status
    status = migration_pass(spec, status, plan=plan("h"), apply=done({"applied": [], "currentVersion": "1"})).status
    assert status.phase == "Succeeded"
    decision = migration_pass(spec, status, "x")
    assert decision.status.phase == "Succeeded" and decision.jobs == []
    assert [e.reason for e in decision.events] == ["RetryIgnored"]
    assert "a changed source or spec starts a new run" in decision.events[0].message


def test_argocd_sees_a_retried_resource_progressing() -> None:
    lost = lost_restore()
    assert argocd.health("DatabaseRestore", {"status": lost.to_wire()})["status"] == "Degraded"
    retried = restore_pass(lost, MISSING, "t").status
    assert argocd.health("DatabaseRestore", {"status": retried.to_wire()})["status"] == "Progressing"
    spec = DatabaseMigrationSpec.model_validate({**MIGRATION, "preChecks": {"enabled": False}})
    migration = migration_pass(spec, failed_migration(spec), "t").status
    assert argocd.health("DatabaseMigration", {"status": migration.to_wire()})["status"] == "Progressing"


def test_an_apply_refused_for_a_changed_plan_says_how_to_plan_again() -> None:
    spec = DatabaseMigrationSpec.model_validate({
        **MIGRATION, "preChecks": {"enabled": False},
        "approval": {"mode": "Manual", "approvedPlanHash": "0123456789abcdef"}})
    status = migration_pass(spec, DatabaseMigrationStatus()).status
    status = migration_pass(spec, status, plan=plan("0123456789abcdef")).status
    refused = done({"message": "the plan changed: its hash is fedcba9876543210, the approved hash is "
                               "0123456789abcdef; review and approve the new plan"}, ok=False)
    refused = dataclasses.replace(refused, reason="PlanChanged")
    failed = migration_pass(spec, status, plan=plan("0123456789abcdef"), apply=refused).status
    assert failed.phase == "Failed" and failed.condition("Ready").reason == "PlanChanged"
    assert failed.message.endswith("to plan again, set annotation dbops.io/retry to a new value")
