"""A Job's pod that cannot start: shown while within its grace, failed after it (or at once when it cannot heal)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.reconcile import backup as backup_reconcile
from dbops.reconcile.jobs import JobOutcome, job_outcome
from dbops.reconcile.pod_start import (
    CONTAINER_CONFIG_ERROR,
    IMAGE_PULL_FAILED,
    POD_UNSCHEDULABLE,
    start_problem,
    with_start_problem,
)

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
RUNNING: dict[str, Any] = {"status": {"active": 1}}


def pod(reason: str, message: str = "", *, created: str = "2026-11-30T02:59:00Z", image: str = "dbops:typo",
        init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": {"creationTimestamp": created},
            "spec": {"containers": [{"name": "runner", "image": image}]},
            "status": {"phase": "Pending", key: [
                {"name": "runner", "image": image, "state": {"waiting": {"reason": reason, "message": message}}}]}}


def test_an_image_pull_error_waits_for_its_grace_then_fails_naming_job_container_image_and_kubelet() -> None:
    young = start_problem("b1-backup", [pod("ErrImagePull", 'pull "dbops:typo": not found')], now=NOW, grace=180)
    assert young is not None and young.reason == IMAGE_PULL_FAILED and not young.terminal
    assert "failing after 180s" in young.message
    old = start_problem("b1-backup", [pod("ImagePullBackOff", 'Back-off pulling image "dbops:typo"',
                                          created="2026-11-30T02:56:59Z")], now=NOW, grace=180)
    assert old is not None and old.terminal and old.reason == IMAGE_PULL_FAILED
    assert old.message == ('Job b1-backup container runner (image dbops:typo) cannot start: ImagePullBackOff: '
                           'Back-off pulling image "dbops:typo"')


def test_an_invalid_image_name_fails_at_once() -> None:
    problem = start_problem("j", [pod("InvalidImageName", 'couldn\'t parse image name "Dbops:"', image="Dbops:")],
                            now=NOW, grace=600)
    assert problem is not None and problem.terminal and "(image Dbops:)" in problem.message


def test_a_missing_secret_key_is_a_config_error_after_the_grace_and_an_init_container_counts() -> None:
    message = 'couldn\'t find key password in Secret default/db'
    early = start_problem("j", [pod("CreateContainerConfigError", message)], now=NOW, grace=300)
    assert early is not None and not early.terminal
    late = start_problem("j", [pod("CreateContainerConfigError", message, init=True, created="2026-11-30T02:00:00Z")],
                         now=NOW, grace=300)
    assert late is not None and late.terminal and late.reason == CONTAINER_CONFIG_ERROR and message in late.message


def test_a_starting_or_running_pod_or_no_pod_is_no_problem() -> None:
    assert start_problem("j", [], now=NOW) is None
    assert start_problem("j", [pod("ContainerCreating")], now=NOW) is None
    running = pod("ErrImagePull")
    running["status"]["phase"] = "Running"
    assert start_problem("j", [running], now=NOW) is None


def test_an_unschedulable_pod_is_shown_never_failed() -> None:
    unschedulable = {"metadata": {"creationTimestamp": "2026-11-29T00:00:00Z"}, "status": {
        "phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": "0/1 nodes are available: 1 Insufficient memory."}]}}
    problem = start_problem("j", [unschedulable], now=NOW, grace=1)
    assert problem is not None and problem.reason == POD_UNSCHEDULABLE and not problem.terminal
    assert "Insufficient memory" in problem.message


def test_credentials_in_a_kubelet_message_are_redacted() -> None:
    problem = start_problem("j", [pod("InvalidImageName", "bad reference https://bob:hunter2@registry.example/x")],
                            now=NOW)
    assert problem is not None and "hunter2" not in problem.message


def test_the_outcome_fails_only_a_running_job_and_keeps_a_volume_wait() -> None:
    stuck = [pod("InvalidImageName", "bad")]
    failed = with_start_problem(job_outcome(RUNNING, stuck), "j", stuck, now=NOW)
    assert failed.state == "Failed" and failed.reason == IMAGE_PULL_FAILED
    finished = JobOutcome("Succeeded", {}, "Succeeded", "ok")
    assert with_start_problem(finished, "j", stuck, now=NOW) is finished
    volume = JobOutcome("Running", {}, "VolumeNotReady", "claim")
    assert with_start_problem(volume, "j", stuck, now=NOW) is volume


SPEC = DatabaseBackupSpec.model_validate({"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                                          "storage": {"pvc": {"claimName": "backups"}}})


def observed(job: JobOutcome) -> backup_reconcile.BackupJobs:
    return backup_reconcile.BackupJobs(job, JobOutcome("Missing"), "b1-backup", "b1-verify")


def test_a_backup_shows_the_wait_once_then_fails_image_pull_failed_and_deletes_its_job() -> None:
    young = [pod("ErrImagePull", "not found")]
    waiting = with_start_problem(job_outcome(RUNNING, young), "b1-backup", young, now=NOW, grace=180)
    decision = backup_reconcile.reconcile_backup(SPEC, DatabaseBackupStatus(), observed(waiting), generation=1,
                                                 now=NOW)
    ready = decision.status.condition("Ready")
    assert decision.status.phase == "Running" and ready is not None and ready.reason == IMAGE_PULL_FAILED
    assert "cannot pull its image yet" in ready.message and decision.requeue_after is not None
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", IMAGE_PULL_FAILED)]
    assert decision.delete == []
    old = [pod("ImagePullBackOff", "back-off", created="2026-11-30T02:00:00Z")]
    failed = with_start_problem(job_outcome(RUNNING, old), "b1-backup", old, now=NOW, grace=180)
    final = backup_reconcile.reconcile_backup(SPEC, decision.status, observed(failed), generation=1, now=NOW)
    ready = final.status.condition("Ready")
    assert final.status.phase == "Failed" and ready is not None and ready.reason == IMAGE_PULL_FAILED
    assert "(image dbops:typo)" in ready.message
    assert [e.type for e in final.events] == ["Warning"]
    assert final.delete == [{"apiVersion": "batch/v1", "kind": "Job", "name": "b1-backup"}]
