"""Crash consistency: an operator down while Jobs finish and resources deleted mid-Job (killed right after a Job
creation: test_operator_crash_adoption.py; Pod Security: test_operator_restricted_jobs.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(1200)
BACKUP = "DatabaseBackup"


def spec(minio: MinioServer, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "storage": harness.s3_storage(minio, bucket), **extra}


def test_operator_down_while_the_job_finishes_catches_up_after_restart(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        postgres: PostgresServer, app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    operator = harness.RunningOperator(installed_crds, namespace)
    operator.start()
    try:
        harness.create_resource(kube_client, namespace, BACKUP, "offline",
                                spec(minio_server, bucket, verify={"decode": False}))
        harness.wait_for_phase(kube_client, namespace, BACKUP, "offline", {"Running"})
        operator.kill()

        def job_finished() -> bool:
            jobs = harness.list_jobs(kube_client, namespace)
            return bool(jobs) and all(
                any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                    for c in (job.get("status") or {}).get("conditions") or []) for job in jobs)

        harness.eventually(job_finished, timeout=240, message="the backup Job to finish")
        assert harness.get_resource(kube_client, namespace, BACKUP, "offline")["status"]["phase"] == "Running"
        restarted = time.monotonic()
        operator.start()
        body = harness.wait_for_phase(kube_client, namespace, BACKUP, "offline", {"Succeeded", "Failed"},
                                      timeout=120)
        caught_up = time.monotonic() - restarted
        assert body["status"]["phase"] == "Succeeded"
        assert caught_up <= 60, f"took {caught_up:.1f}s after restart"
        print(f"terminal phase {caught_up:.1f}s after the operator restarted")
    finally:
        operator.stop()
        operator.log_path.unlink(missing_ok=True)


def test_backup_deleted_mid_job_removes_jobs_and_pods_and_leaves_no_artifact(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, BACKUP, "doomed", spec(minio_server, bucket, deletionPolicy="Delete"))
    harness.eventually(lambda: harness.list_jobs(kube_client, namespace), message="the backup Job")
    harness.delete_resource(kube_client, namespace, BACKUP, "doomed")

    harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, "doomed") is None,
                       message="the backup to be finalized")
    harness.eventually(lambda: not harness.list_jobs(kube_client, namespace)
                       or all(j["metadata"].get("labels", {}).get("dbops.io/role") == "delete"
                              for j in harness.list_jobs(kube_client, namespace)),
                       message="the backup's Jobs to be deleted")
    harness.eventually(lambda: not [p for p in harness.list_pods(kube_client, namespace)
                                    if p["metadata"]["labels"].get("dbops.io/role") in ("backup", "verify")],
                       message="the backup's pods to be deleted")
    harness.eventually(lambda: not [k for k in harness.s3_keys(minio_server, bucket) if "/doomed/" in k],
                       timeout=120, message="no artifact left (deletionPolicy: Delete)")
