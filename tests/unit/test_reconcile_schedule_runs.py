"""A schedule whose CronJob's run cannot start (its pod's image, its env) says so, deletes the stuck Job, and
recovers once a later run succeeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.unit.test_reconcile_schedule import SPEC

from dbops.api.schedule import DatabaseBackupScheduleStatus
from dbops.reconcile.pod_start import start_problem
from dbops.reconcile.schedule import ScheduledBackup, ScheduledRun, reconcile_schedule

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
JOB = "nightly-cron-29412345"


def pod(reason: str, message: str, *, age: float, image: str = "dbops:tset") -> dict[str, Any]:
    created = (NOW - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    return {"metadata": {"name": f"{JOB}-x1", "creationTimestamp": created},
            "spec": {"containers": [{"name": "runner", "image": image}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "runner", "image": image, "state": {"waiting": {"reason": reason, "message": message}}}]}}


def run(reason: str, message: str, *, age: float, job: str = JOB) -> ScheduledRun:
    problem = start_problem(job, [pod(reason, message, age=age)], now=NOW, grace=180)
    return ScheduledRun(job, NOW - timedelta(seconds=age), problem)


def reconcile(status: DatabaseBackupScheduleStatus, runs: list[ScheduledRun], *,
              backups: list[ScheduledBackup] | None = None, last_successful_time: datetime | None = None,
              generation: int = 1) -> Any:
    return reconcile_schedule(SPEC, status, backups or [], cron_job_name="nightly-cron", last_schedule_time=NOW,
                              generation=generation, now=NOW, runs=runs, last_successful_time=last_successful_time)


def ready(status: DatabaseBackupScheduleStatus) -> Any:
    condition = status.condition("Ready")
    assert condition is not None
    return condition


def test_a_run_that_cannot_pull_its_image_waits_then_fails_the_run_deletes_its_job_and_recovers() -> None:
    pulling = 'Failed to pull image "dbops:tset": not found'
    waiting = reconcile(DatabaseBackupScheduleStatus(), [run("ErrImagePull", pulling, age=20)])
    assert ready(waiting.status).reason == "ImagePullFailed" and "(failing after 180s)" in waiting.status.message
    assert waiting.status.phase == "Active" and waiting.delete == [] and waiting.requeue_after
    assert [(e.type, e.reason) for e in waiting.events] == [("Warning", "ImagePullFailed")]

    stuck = reconcile(waiting.status, [run("ImagePullBackOff", 'Back-off pulling image "dbops:tset"', age=200)])
    status = stuck.status
    assert stuck.delete == [{"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "propagation": "Foreground"}]
    assert status.last_start_failure is not None and status.last_start_failure.job_name == JOB
    assert ready(status).status == "False" and ready(status).reason == "ImagePullFailed"
    assert f"Job {JOB} container runner (image dbops:tset) cannot start: ImagePullBackOff" in status.message
    assert status.phase == "Active" and not status.is_terminal  # the schedule keeps firing
    assert [(e.type, e.reason) for e in stuck.events] == [("Warning", "ImagePullFailed")]

    # the Job is gone; the condition stays until a later run proves the fix (a spec change alone does not)
    after = reconcile(status, [], generation=2)
    assert ready(after.status).reason == "ImagePullFailed" and after.events == [] and after.delete == []
    # a later run that started and is still running is no proof either
    running = reconcile(after.status, [ScheduledRun("nightly-cron-29412346", NOW, None)], generation=2)
    assert ready(running.status).reason == "ImagePullFailed"

    recovered = reconcile(running.status, [], generation=2, last_successful_time=NOW + timedelta(seconds=5))
    assert recovered.status.last_start_failure is not None and recovered.status.last_start_failure.recovered_at == NOW
    assert ready(recovered.status).reason == "Active" and recovered.status.message == "0 backups retained"
    assert [(e.type, e.reason) for e in recovered.events] == [("Normal", "RunRecovered")]


def test_a_backup_created_after_the_failed_run_also_shows_the_runs_recovered() -> None:
    failed = reconcile(DatabaseBackupScheduleStatus(), [run("InvalidImageName", "invalid reference format", age=1)])
    assert failed.status.last_start_failure is not None and failed.delete  # InvalidImageName: at once
    older = ScheduledBackup("nightly-1", "Succeeded", NOW - timedelta(hours=1), NOW - timedelta(minutes=59))
    still = reconcile(failed.status, [], backups=[older]).status
    assert still.last_start_failure is not None and still.last_start_failure.recovered_at is None
    assert ready(still).reason == "ImagePullFailed"
    newer = ScheduledBackup("nightly-2", "Running", NOW + timedelta(minutes=1))
    recovered = reconcile(failed.status, [], backups=[older, newer])
    assert recovered.status.last_start_failure is not None and recovered.status.last_start_failure.recovered_at
    assert ready(recovered.status).reason == "Active"
    again = reconcile(recovered.status, [], backups=[older, newer])
    assert again.events == [] and ready(again.status).reason == "Active"  # recovered once, not at every pass


def test_a_removed_secret_key_fails_the_run_container_config_error_once_per_job() -> None:
    message = "couldn't find key uri in Secret prod/db"
    first = reconcile(DatabaseBackupScheduleStatus(), [run("CreateContainerConfigError", message, age=300)])
    assert ready(first.status).reason == "ContainerConfigError" and message in first.status.message
    again = reconcile(first.status, [run("CreateContainerConfigError", message, age=310)])
    assert again.events == [] and again.delete  # the Job is deleted until it is gone; one Event per Job
    other = reconcile(again.status, [run("CreateContainerConfigError", message, age=300, job="nightly-cron-2")])
    assert [e.reason for e in other.events] == ["ContainerConfigError"]
    assert other.status.last_start_failure is not None and other.status.last_start_failure.job_name == "nightly-cron-2"


def test_an_unschedulable_run_is_shown_while_it_waits_and_never_deleted() -> None:
    unschedulable = {"metadata": {"name": f"{JOB}-x1", "creationTimestamp": "2026-11-30T02:00:00Z"},
                     "spec": {"containers": [{"name": "runner", "image": "dbops:test"}]},
                     "status": {"phase": "Pending", "conditions": [
                         {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": "0/3 nodes are available: 3 Insufficient memory."}]}}
    waiting = ScheduledRun(JOB, NOW - timedelta(hours=1), start_problem(JOB, [unschedulable], now=NOW))
    decision = reconcile(DatabaseBackupScheduleStatus(), [waiting])
    assert ready(decision.status).reason == "PodUnschedulable" and "Insufficient memory" in decision.status.message
    assert decision.delete == [] and decision.status.last_start_failure is None
    started = reconcile(decision.status, [ScheduledRun(JOB, NOW - timedelta(hours=1), None)])
    assert ready(started.status).reason == "Active"
