"""Decisions for a DatabaseBackup: backup Job, then verify Job, then a terminal phase; deletion and expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dbops.api.backup import (
    Artifact,
    BackupJobResult,
    BackupPhase,
    BackupVerificationResult,
    DatabaseBackupSpec,
    DatabaseBackupStatus,
)
from dbops.api.common import parse_duration
from dbops.api.roles import JobRole
from dbops.reconcile import results, retry
from dbops.reconcile.actions import ArtifactParams, Decision, JobRequest
from dbops.reconcile.jobs import MISSING, JobOutcome
from dbops.reconcile.steps import Steps


@dataclass(frozen=True)
class BackupJobs:
    """The observed Jobs of one DatabaseBackup and their deterministic names."""

    backup: JobOutcome
    verify: JobOutcome
    backup_name: str
    verify_name: str


def needs_verification(spec: DatabaseBackupSpec) -> bool:
    """Whether a verify Job runs after the backup Job."""
    return spec.verify.decode or spec.verify.restore_test


def artifact_directory(artifact: Artifact) -> str:
    """The backup's directory (the one holding manifest.json)."""
    if artifact.manifest_uri:
        return artifact.manifest_uri.rsplit("/", 1)[0]
    return artifact.uri.rsplit("/", 1)[0]


def retry_backup(status: DatabaseBackupStatus, token: str | None, *, generation: int,
                 now: datetime) -> Decision | None:
    """A finished backup and its retry token (see dbops.reconcile.retry). The new attempt's backup Job commits
    to the same place; an artifact the failed attempt committed (it failed verifying) is reported again, not
    dumped over, and verified again."""
    return retry.retry(status, token, lambda old: DatabaseBackupStatus(), generation=generation, now=now,
                       ignored="a backup is taken once; create a new DatabaseBackup (or let its schedule run) for "
                               "another")


def reconcile_backup(spec: DatabaseBackupSpec, status: DatabaseBackupStatus, observed: BackupJobs,
                     *, generation: int, now: datetime, token: str | None = None) -> Decision:
    """The next step of a backup from its spec, status and Jobs (``token``: its dbops.io/retry annotation)."""
    status = status.model_copy(deep=True)
    if status.is_terminal:
        retried = retry_backup(status, token, generation=generation, now=now)
        if retried is not None:
            return retried
        _set_expiry(spec, status)
        return Decision(status)
    retry.begin(status, token)
    decision = Decision(status)
    steps = Steps(status, decision, generation=generation, now=now)
    if not _stored(steps, status, observed):
        return decision
    if needs_verification(spec) and not _verified(steps, status, observed):
        return decision
    _succeed(spec, steps, status)
    return decision


def _stored(steps: Steps[BackupPhase], status: DatabaseBackupStatus, observed: BackupJobs) -> bool:
    """Advance the backup Job; True once its artifact is recorded in status."""
    backup, name = observed.backup, observed.backup_name
    if status.phase == "Verifying" and status.artifact is not None and status.artifact.uri:
        return True  # recorded: a backup Job removed since (ttlSecondsAfterFinished) must not dump again
    if steps.job_pending(backup, JobRequest(JobRole.BACKUP, name), phase="Running",
                         message=f"backup Job {name} running", started="BackupStarted"):
        return False
    if backup.state == "Failed":
        steps.fail(backup.reason, backup.message, "BackupFailed")
        return False
    outcome = results.model_from_result(BackupJobResult, backup.result)
    if outcome is None or not outcome.artifact.uri:
        steps.fail("NoResult", "the backup Job succeeded but reported no artifact", "BackupFailed")
        return False
    status.artifact = outcome.artifact
    status.source = outcome.source
    return True


def _verified(steps: Steps[BackupPhase], status: DatabaseBackupStatus, observed: BackupJobs) -> bool:
    """Advance verification; True once the verify Job succeeded."""
    assert status.artifact is not None
    verify = observed.verify
    request = JobRequest(JobRole.VERIFY, observed.verify_name, ArtifactParams(artifact_directory(status.artifact)))
    if steps.job_pending(verify, request, phase="Verifying", message="verifying the stored backup",
                         started="VerificationStarted"):
        return False
    status.verification = _verification(verify.result.get("verification"))
    if verify.state == "Failed":
        reason = verify.reason if verify.reason not in ("", "JobFailed") else "VerificationFailed"
        steps.fail(reason, verify.message, "VerificationFailed")
        return False
    return True


def _verification(data: Any) -> BackupVerificationResult | None:
    """The verification status, failed SQL checks folded into the restore test (passed and mismatches)."""
    verification = results.model_from_result(BackupVerificationResult, data)
    if verification is None or verification.restore_test is None:
        return verification
    failed = results.failed_checks(data.get("checks") if isinstance(data, dict) else None)
    if failed:
        verification.restore_test.passed = False
        verification.restore_test.mismatches = [*verification.restore_test.mismatches, *failed]
    return verification


def _succeed(spec: DatabaseBackupSpec, steps: Steps[BackupPhase], status: DatabaseBackupStatus) -> None:
    artifact = status.artifact
    size = artifact.size_bytes if artifact else 0
    steps.succeed(f"backup stored at {artifact.uri if artifact else '?'} ({size} bytes)", "BackupSucceeded")
    _set_expiry(spec, status)


def _set_expiry(spec: DatabaseBackupSpec, status: DatabaseBackupStatus) -> None:
    if spec.ttl and status.completed_at is not None and status.expires_at is None:
        status.expires_at = status.completed_at + timedelta(seconds=parse_duration(spec.ttl))


def is_expired(status: DatabaseBackupStatus, now: datetime) -> bool:
    """Whether a finished backup's ttl has passed."""
    return status.is_terminal and status.expires_at is not None and now >= status.expires_at


@dataclass(frozen=True)
class DeletionStep:
    """What deleting a DatabaseBackup still needs."""

    done: bool
    """The finalizer may be released."""
    decision: Decision | None = None
    """The artifact-deleting Job to create, and the Event saying so."""
    message: str = ""
    warning: bool = False


def job_vanished(status: DatabaseBackupStatus, backup_job: JobOutcome) -> bool:
    """Whether the backup Job is gone with its result before the operator read it (deleted by hand or by a
    jobTemplate.ttlSecondsAfterFinished while the operator was down): it may have committed an artifact."""
    return status.phase == "Running" and backup_job.state == "Missing" and not (status.artifact and status.artifact.uri)


def deletion_step(spec: DatabaseBackupSpec, status: DatabaseBackupStatus, delete_job: JobOutcome,
                  delete_job_name: str, backup_job: JobOutcome = MISSING, *,
                  expected_dir: str | None = None) -> DeletionStep:
    """The next step of deleting a backup: wait for a backup Job that may still commit, run the
    artifact-deleting Job per deletionPolicy on what was committed (known from status, or from the Job's
    result when the operator was down as it finished, or, when the Job vanished with its result, at
    ``expected_dir``: where the runner commits, ``<storage>/<namespace>/<database>/<name>``), then release."""
    if spec.deletion_policy == "Retain":
        return DeletionStep(True, message="artifact retained (deletionPolicy: Retain)")
    if backup_job.state == "Running":
        return DeletionStep(False, message="waiting for the backup Job to finish: it may still store an artifact, "
                                           "which deletionPolicy Delete then removes")
    artifact = status.artifact
    if (artifact is None or not artifact.uri) and backup_job.state == "Succeeded":
        committed = results.model_from_result(BackupJobResult, backup_job.result)
        artifact = committed.artifact if committed is not None else None
    if (artifact is None or not artifact.uri) and job_vanished(status, backup_job):
        if expected_dir is None:
            return DeletionStep(True, warning=True, message="the backup Job is gone with its result and the target "
                                "database name is unknown: an artifact it may have stored is not deleted")
        artifact = Artifact(uri=f"{expected_dir}/", manifest_uri=f"{expected_dir}/manifest.json")
    if artifact is None or not artifact.uri:
        return DeletionStep(True, message="no stored artifact to delete")
    directory = artifact_directory(artifact)
    decision = Decision(status)
    if decision.job_pending(delete_job, JobRequest(JobRole.DELETE, delete_job_name, ArtifactParams(directory))):
        if decision.jobs:
            decision.event("Normal", "DeletingArtifact", f"deleting artifact {directory}")
        return DeletionStep(False, decision, message=f"deleting artifact {directory}")
    if delete_job.state == "Failed":
        return DeletionStep(True, message=f"could not delete artifact {directory}: {delete_job.message}",
                            warning=True)
    return DeletionStep(True, message=f"deleted artifact {directory}")
