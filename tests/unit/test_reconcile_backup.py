"""DatabaseBackup decisions: Job creation, adoption, results into status, verification, no regression."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.reconcile import backup as backup_reconcile
from dbops.reconcile.actions import ArtifactParams
from dbops.reconcile.jobs import MISSING, JobOutcome, job_outcome

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
SPEC = DatabaseBackupSpec.model_validate({
    "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
    "storage": {"s3": {"bucket": "backups"}},
    "ttl": "1h",
})
DELETE = SPEC.model_copy(update={"deletion_policy": "Delete"})
RESULT = {
    "command": "backup", "ok": True, "exitCode": 0, "reason": "Succeeded", "message": "done",
    "artifact": {"uri": "s3://backups/ns/db/b1/dump.zst", "manifestUri": "s3://backups/ns/db/b1/manifest.json",
                 "sizeBytes": 1234, "sha256": "ab" * 32, "format": "custom", "codec": "zstd", "parts": 1},
    "source": {"serverVersion": "18.1", "databaseSizeBytes": 9999, "tableCount": 3, "dumpToolVersion": "18.1",
               "extra": "ignored"},
}


def observed(backup: JobOutcome, verify: JobOutcome = MISSING) -> backup_reconcile.BackupJobs:
    return backup_reconcile.BackupJobs(backup, verify, "b1-backup-1", "b1-verify-1")


def finished_job(condition: str, message: dict[str, Any] | str, exit_code: int = 0) -> JobOutcome:
    job = {"status": {"conditions": [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded"}]}}
    text = message if isinstance(message, str) else json.dumps(message)
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {
        "exitCode": exit_code, "message": text, "finishedAt": "2026-11-25T02:01:00Z"}}}]}}
    return job_outcome(job, [pod])


def test_a_new_backup_starts_its_job_and_runs() -> None:
    decision = backup_reconcile.reconcile_backup(SPEC, DatabaseBackupStatus(), observed(MISSING), generation=1, now=NOW)
    assert [job.role for job in decision.jobs] == ["backup"]
    assert decision.status.phase == "Running"
    assert decision.status.job_name == "b1-backup-1"
    assert decision.events[0].reason == "BackupStarted"


def test_an_adopted_running_job_is_not_created_again() -> None:
    decision = backup_reconcile.reconcile_backup(SPEC, DatabaseBackupStatus(), observed(JobOutcome("Running")),
                                                 generation=1, now=NOW)
    assert decision.jobs == []
    assert decision.status.phase == "Running"


def test_backup_result_fills_status_then_verification_runs() -> None:
    running = DatabaseBackupStatus(phase="Running")
    decision = backup_reconcile.reconcile_backup(SPEC, running, observed(finished_job("Complete", RESULT)),
                                                 generation=1, now=NOW)
    assert decision.status.phase == "Verifying"
    assert decision.jobs[0].role == "verify"
    assert decision.jobs[0].params.artifact_dir == "s3://backups/ns/db/b1"
    assert decision.status.artifact is not None and decision.status.artifact.size_bytes == 1234
    assert decision.status.source is not None and decision.status.source.table_count == 3


def test_verified_backup_succeeds_with_expiry() -> None:
    verify_result = {"ok": True, "verification": {"decoded": True, "verifiedAt": "2026-11-25T02:02:00Z"}}
    decision = backup_reconcile.reconcile_backup(
        SPEC, DatabaseBackupStatus(phase="Verifying"),
        observed(finished_job("Complete", RESULT), finished_job("Complete", verify_result)), generation=1, now=NOW)
    status = decision.status
    assert status.phase == "Succeeded"
    assert status.condition("Ready") is not None and status.condition("Ready").status == "True"  # type: ignore[union-attr]
    assert status.verification is not None and status.verification.decoded
    assert status.expires_at == NOW + timedelta(hours=1)
    assert backup_reconcile.is_expired(status, NOW + timedelta(hours=2))


def test_failed_job_reports_the_runner_reason() -> None:
    failure = {"ok": False, "exitCode": 2, "reason": "AuthenticationFailed",
               "message": 'password authentication failed for user "app"'}
    decision = backup_reconcile.reconcile_backup(SPEC, DatabaseBackupStatus(phase="Running"),
                                                 observed(finished_job("Failed", failure, 2)), generation=1, now=NOW)
    ready = decision.status.condition("Ready")
    assert decision.status.phase == "Failed"
    assert ready is not None and ready.reason == "AuthenticationFailed"
    assert decision.events[-1].type == "Warning"


def test_failed_job_without_json_uses_the_log_tail_redacted() -> None:
    outcome = finished_job("Failed", "Traceback...\nconnect postgresql://u:hunter2@h/db failed", 4)
    assert outcome.reason == "BackoffLimitExceeded"
    assert "hunter2" not in outcome.message


def test_terminal_phase_never_regresses() -> None:
    done = DatabaseBackupStatus()
    done.mark_failed("AuthenticationFailed", "no", generation=1, now=NOW)
    for outcome in (MISSING, JobOutcome("Running"), finished_job("Complete", RESULT)):
        decision = backup_reconcile.reconcile_backup(SPEC, done, observed(outcome), generation=2, now=NOW)
        assert decision.status.phase == "Failed" and decision.jobs == []


def test_deletion_runs_the_delete_job_only_with_delete_policy() -> None:
    artifact = {k: v for k, v in RESULT["artifact"].items() if k != "parts"}
    status = DatabaseBackupStatus.model_validate({"artifact": artifact})
    step = backup_reconcile.deletion_step(DELETE, status, MISSING, "b1-delete-1")
    assert not step.done and step.decision is not None
    assert [job.expect(ArtifactParams).artifact_dir for job in step.decision.jobs] == ["s3://backups/ns/db/b1"]
    assert [event.reason for event in step.decision.events] == ["DeletingArtifact"]
    waiting = backup_reconcile.deletion_step(DELETE, status, JobOutcome("Running"), "b1-delete-1")
    assert not waiting.done and waiting.decision is not None and waiting.decision.jobs == []
    assert SPEC.deletion_policy == "Retain"  # the default: deleting (or an Argo CD prune) keeps the dump
    assert backup_reconcile.deletion_step(SPEC, status, MISSING, "b1-delete-1").done
    assert backup_reconcile.deletion_step(DELETE, status, finished_job("Complete", {}), "b1-delete-1").done


def test_the_backup_result_is_read_with_the_model_the_runner_writes_it_with() -> None:
    from dbops.api.backup import Artifact, BackupJobResult, BackupSource

    written = BackupJobResult(
        artifact=Artifact(uri="s3://b/ns/app/b1/dump.zst", manifest_uri="s3://b/ns/app/b1/manifest.json",
                          size_bytes=10, sha256="cd" * 32, format="custom", codec="zstd"),
        source=BackupSource(database="app", server_version="18.1")).to_wire()
    document = {"command": "backup", "ok": True, "exitCode": 0, "message": "done", **written}
    decision = backup_reconcile.reconcile_backup(
        SPEC.model_copy(update={"verify": SPEC.verify.model_copy(update={"decode": False})}),
        DatabaseBackupStatus.model_validate({"phase": "Running"}),
        observed(finished_job("Complete", document)), generation=1, now=NOW)
    status = decision.status
    assert status.phase == "Succeeded"
    assert status.artifact is not None and status.artifact.sha256 == "cd" * 32
    assert status.source is not None and status.source.database == "app"


def test_deletion_finds_an_artifact_committed_while_the_operator_was_down() -> None:
    unseen = DatabaseBackupStatus.model_validate({"phase": "Running"})
    running = backup_reconcile.deletion_step(DELETE, unseen, MISSING, "b1-delete-1", JobOutcome("Running"))
    assert not running.done and running.decision is None and "may still store" in running.message
    committed = backup_reconcile.deletion_step(DELETE, unseen, MISSING, "b1-delete-1",
                                               finished_job("Complete", RESULT))
    assert not committed.done and committed.decision is not None
    assert [job.params for job in committed.decision.jobs] == [ArtifactParams("s3://backups/ns/db/b1")]
    assert backup_reconcile.deletion_step(SPEC, unseen, MISSING, "b1-delete-1", JobOutcome("Running")).done



def test_deletion_after_the_backup_job_vanished_with_its_result_deletes_where_it_would_have_committed() -> None:
    # The Job was removed (by hand, or a jobTemplate.ttlSecondsAfterFinished) while the operator was down: before,
    # "no stored artifact to delete" released the finalizer and a committed dump stayed in the bucket.
    unseen = DatabaseBackupStatus.model_validate({"phase": "Running", "jobName": "b1-backup-1"})
    step = backup_reconcile.deletion_step(DELETE, unseen, MISSING, "b1-delete-1", MISSING,
                                          expected_dir="s3://backups/ns/db/b1")
    assert not step.done and step.decision is not None
    assert [job.params for job in step.decision.jobs] == [ArtifactParams("s3://backups/ns/db/b1")]
    unknown = backup_reconcile.deletion_step(DELETE, unseen, MISSING, "b1-delete-1", MISSING)
    assert unknown.done and unknown.warning and "not deleted" in unknown.message
    pending = DatabaseBackupStatus.model_validate({"phase": "Pending"})
    assert backup_reconcile.deletion_step(DELETE, pending, MISSING, "b1-delete-1", MISSING).message == \
        "no stored artifact to delete"


RUNNING_JOB: dict[str, Any] = {"status": {"active": 1}}
SCHEDULER_POD: dict[str, Any] = {"status": {"phase": "Pending", "conditions": [
    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
     "message": '0/3 nodes are available: persistentvolumeclaim "backups" not found. preemption: 0/3 nodes are '
                "available: 3 Preemption is not helpful for scheduling."}]}}
KUBELET_POD: dict[str, Any] = {"status": {"phase": "Pending", "containerStatuses": [
    {"state": {"waiting": {"reason": "ContainerCreating",
                           "message": 'persistentvolumeclaim "backups" is not bound (phase Pending)'}}}]}}
IMAGE_POD: dict[str, Any] = {"status": {"phase": "Pending", "containerStatuses": [
    {"state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}}]}}


def test_a_pod_waiting_for_its_claim_shows_on_the_backup_with_one_warning() -> None:
    for pod in (SCHEDULER_POD, KUBELET_POD):
        job = job_outcome(RUNNING_JOB, [pod])
        assert job.state == "Running" and job.reason == "VolumeNotReady" and '"backups"' in job.message
        decision = backup_reconcile.reconcile_backup(SPEC, DatabaseBackupStatus(), observed(job), generation=1, now=NOW)
        ready = decision.status.condition("Ready")
        assert ready is not None and ready.reason == "VolumeNotReady" and '"backups"' in ready.message
        assert [(e.type, e.reason) for e in decision.events] == [("Warning", "VolumeNotReady")]
        assert decision.requeue_after is not None
        again = backup_reconcile.reconcile_backup(SPEC, decision.status, observed(job), generation=1, now=NOW)
        assert again.events == []  # once, not on every re-check
        running = backup_reconcile.reconcile_backup(SPEC, decision.status, observed(JobOutcome("Running")),
                                                    generation=1, now=NOW)
        ready = running.status.condition("Ready")
        assert ready is not None and ready.reason == "Running"  # the claim was bound: the reason goes
    assert job_outcome(RUNNING_JOB, [IMAGE_POD]).reason == ""


def test_a_backup_job_removed_after_its_result_was_recorded_is_not_run_again() -> None:
    """jobTemplate.ttlSecondsAfterFinished removes the finished backup Job while the backup is verified: the
    stored artifact is verified, not dumped a second time."""
    first = backup_reconcile.reconcile_backup(SPEC, DatabaseBackupStatus(phase="Running"),
                                              observed(finished_job("Complete", RESULT)), generation=1, now=NOW)
    assert first.status.phase == "Verifying"
    for verify in (MISSING, JobOutcome("Running")):
        decision = backup_reconcile.reconcile_backup(SPEC, first.status, observed(MISSING, verify), generation=1,
                                                     now=NOW)
        assert [job.role for job in decision.jobs] == (["verify"] if verify is MISSING else [])
        assert decision.status.phase == "Verifying" and decision.status.attempts == first.status.attempts
    verified = {"ok": True, "verification": {"decoded": True}}
    done = backup_reconcile.reconcile_backup(SPEC, first.status,
                                             observed(MISSING, finished_job("Complete", verified)),
                                             generation=1, now=NOW)
    assert done.status.phase == "Succeeded" and done.jobs == []
    assert done.status.artifact == first.status.artifact
