"""A DatabaseBackupSchedule whose scheduled runs cannot start (a typo in its image tag) says so on the schedule,
with a Warning Event, deletes the stuck Job, and recovers once a run after the fix succeeded: the real CronJob
controller fires the runs, the test bed's kubelet has only the image tags a cluster would have."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
SCHEDULE = "DatabaseBackupSchedule"


def ready(kube_client: Any, namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    status = (harness.get_resource(kube_client, namespace, SCHEDULE, name) or {}).get("status") or {}
    return status, {c["type"]: c for c in status.get("conditions") or []}.get("Ready") or {}


def test_a_mistyped_image_tag_fails_the_scheduled_runs_visibly_and_the_fix_recovers(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, s3_secret: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    with harness.running_operator(installed_crds, namespace, "--start-grace-seconds", "4") as operator:
        harness.create_resource(kube_client, namespace, SCHEDULE, "nightly", {
            "schedule": "*/1 * * * *",
            "backupTemplate": {"spec": {
                "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                "storage": harness.s3_storage(minio_server, bucket), "verify": {"decode": False},
                "jobTemplate": {"image": "dbops:tset"}}}})

        def failed_run() -> tuple[dict[str, Any], dict[str, Any]] | None:
            status, condition = ready(kube_client, namespace, "nightly")
            return (status, condition) if (status.get("lastStartFailure") or {}).get("jobName") else None

        status, condition = harness.eventually(failed_run, timeout=240, message="the scheduled run's start failure")
        failure = status["lastStartFailure"]
        job = failure["jobName"]
        assert job.startswith("nightly-cron-") and failure["reason"] == "ImagePullFailed", failure
        assert condition["status"] == "False" and condition["reason"] == "ImagePullFailed", condition
        assert f"Job {job} container runner (image dbops:tset) cannot start" in condition["message"], condition
        assert "ErrImagePull" in condition["message"] or "ImagePullBackOff" in condition["message"], condition
        assert status["phase"] == "Active", status  # the schedule keeps firing: a fix needs no re-creation
        harness.eventually(lambda: any(
            e["involvedObject"]["name"] == "nightly" and e["type"] == "Warning" and e["reason"] == "ImagePullFailed"
            and job in e["message"] for e in harness.list_events(kube_client, namespace)),
            timeout=60, message="a Warning Event naming the Job")
        # the stuck Job is deleted, so it neither piles up nor holds back the next run (concurrencyPolicy Forbid)
        harness.eventually(lambda: job not in {j["metadata"]["name"] for j in harness.list_jobs(kube_client, namespace)},
                           timeout=120, message=f"Job {job} deleted")
        assert harness.list_resources(kube_client, namespace, "DatabaseBackup") == []

        client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "databasebackupschedules", "nightly",
            {"spec": {"backupTemplate": {"spec": {"jobTemplate": {"image": "dbops:test"}}}}}, _preload_content=False)

        def recovered() -> tuple[dict[str, Any], dict[str, Any]] | None:
            status, condition = ready(kube_client, namespace, "nightly")
            return (status, condition) if condition.get("reason") == "Active" else None

        status, condition = harness.eventually(recovered, timeout=300, message="the schedule to recover")
        assert status["lastStartFailure"]["recoveredAt"], status  # kept as history, no longer in Ready
        assert harness.list_resources(kube_client, namespace, "DatabaseBackup"), "a backup from a later run"
        assert any(e["involvedObject"]["name"] == "nightly" and e["reason"] == "RunRecovered"
                   for e in harness.list_events(kube_client, namespace))
        assert "Traceback" not in operator.logs()
