"""DatabaseMigration smoke tests (spec.verify.jobs): started after a successful apply, judged by exit code or
deadline, a failure triggering onFailure; and the Job they run in."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.unit.test_reconcile_migration import PLAN, done, observe, run, spec

from dbops.api.migration import DatabaseMigrationStatus
from dbops.reconcile import smoke
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome
from dbops.specs import smoke_jobs
from dbops.specs.owner import Owner

TEST = {"name": "api-probe", "image": "registry.example/mentorhub:1.4", "command": ["python", "-m", "smoke"],
        "env": [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "token"}}}],
        "timeout": "90s"}
APPLIED = done({"applied": [{"version": "1", "name": "a"}], "currentVersion": "1", "previousVersion": ""})


def with_smoke(observed: Any, *outcomes: JobOutcome) -> Any:
    jobs = dataclasses.replace(observed.jobs, smoke=outcomes, smoke_names=tuple(f"m-smoke-{i}" for i in
                                                                                  range(len(outcomes))))
    return dataclasses.replace(observed, jobs=jobs)


def failed_job(reason: str = "PodFailurePolicy", code: int = 3, output: str = "GET /health 500") -> JobOutcome:
    job = {"spec": {"activeDeadlineSeconds": 90},
           "status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason}]}}
    pods = [{"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": code, "message": output,
                                                                        "finishedAt": "2026-11-29T23:00:00Z"}}}]}}]
    return smoke.smoke_outcome(job, pods if reason != "DeadlineExceeded" else [])


def test_smoke_jobs_start_after_apply_and_the_run_waits_for_them() -> None:
    s = spec(preChecks={"enabled": False}, verify={"jobs": [TEST, {**TEST, "name": "orm"}]})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Migrating")
    decision = run(s, status, with_smoke(observe(plan=PLAN, apply=APPLIED), MISSING, MISSING))
    assert [j.role for j in decision.jobs] == ["smoke", "smoke"]
    assert decision.status.phase == "Verifying" and not decision.status.is_terminal
    assert [t.state for t in decision.status.smoke_tests] == ["Running", "Running"]
    passed = JobOutcome("Succeeded", {}, "Succeeded", "passed")
    decision = run(s, decision.status, with_smoke(observe(plan=PLAN, apply=APPLIED), passed, passed))
    assert decision.status.phase == "Succeeded" and decision.jobs == []


def test_a_failing_smoke_test_fails_the_run_naming_it_with_a_warning() -> None:
    s = spec(preChecks={"enabled": False}, verify={"jobs": [TEST]})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Verifying")
    decision = run(s, status, with_smoke(observe(plan=PLAN, apply=APPLIED), failed_job()))
    failed = next(c for c in decision.status.conditions if c.type == "Failed")
    assert decision.status.phase == "Failed" and failed.reason == "SmokeTestFailed"
    assert "smoke test api-probe (Job m-smoke-0) exited with code 3: GET /health 500" in decision.status.message
    assert any(e.type == "Warning" and "SmokeTestFailed" in e.message for e in decision.events)


def test_a_timed_out_smoke_test_rolls_back_with_restore_backup() -> None:
    s = spec(preChecks={"enabled": False}, verify={"jobs": [TEST]}, onFailure="RestoreBackup",
             backup={"enabled": True, "storage": {"s3": {"bucket": "bkt"}}})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Verifying")
    observed = observe(plan=PLAN, apply=APPLIED, backup=ChildState("pre", "Succeeded"))
    decision = run(s, status, with_smoke(observed, failed_job("DeadlineExceeded")))
    assert decision.status.phase == "RollingBack", decision.status
    assert "timed out after 90s" in decision.status.message
    assert [c.kind for c in decision.children] == ["DatabaseRestore"]


def test_the_smoke_job_is_the_users_image_with_a_deadline_and_no_retry() -> None:
    s = spec(verify={"jobs": [TEST]})
    owner = Owner(kind="DatabaseMigration", name="m", namespace="ns", uid="u-1", generation=1)
    name = smoke_jobs.smoke_job_names(owner, s, "rev1")[0]
    job = smoke_jobs.build_smoke_job(owner, s, s.verify.jobs[0], name=name)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == TEST["image"] and container["command"] == TEST["command"]
    assert "args" not in container and job["spec"]["activeDeadlineSeconds"] == 90
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [0]
    env = {e["name"]: e for e in container["env"]}
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "app", "key": "token"}
    assert "DATABASE_URL" in env and "value" not in env["DATABASE_URL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert job["metadata"]["labels"]["dbops.io/role"] == "smoke"


def test_a_smoke_test_whose_pod_cannot_start_fails_the_run_without_waiting_for_the_others() -> None:
    """Its Job is deleted (no pod left pending); waiting for the other tests would only start it again."""
    s = spec(preChecks={"enabled": False}, verify={"jobs": [TEST, {**TEST, "name": "orm"}]})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Verifying")
    stuck = JobOutcome("Failed", {}, "ImagePullFailed", "Job m-smoke-0 container smoke (image app:typo) cannot "
                       "start: ImagePullBackOff: Back-off pulling image \"app:typo\"")
    decision = run(s, status, with_smoke(observe(plan=PLAN, apply=APPLIED), stuck, JobOutcome("Running")))
    assert decision.status.phase == "Failed" and "(image app:typo) cannot start" in decision.status.message
    assert decision.delete == [{"apiVersion": "batch/v1", "kind": "Job", "name": "m-smoke-0"}]
