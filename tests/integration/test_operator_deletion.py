"""Deletion never orphans an artifact: a backup deleted while the operator was down and its Job committed
leaves nothing in the bucket (deletionPolicy Delete), and one deleted mid-Job waits for what the Job stores.

The operator is killed at each step of the finalizer: while it waits for a backup Job that may still commit,
while its artifact-deleting Job runs, and after that Job finished but before the finalizer was released."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
BACKUP = "DatabaseBackup"


def spec(minio: MinioServer, bucket: str) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": harness.s3_storage(minio, bucket),
            "verify": {"decode": False}, "deletionPolicy": "Delete"}



def test_backup_committed_while_the_operator_was_down_then_deleted_leaves_nothing_in_the_bucket(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        postgres: PostgresServer, app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    with harness.running_operator(installed_crds, namespace) as operator:
        harness.create_resource(kube_client, namespace, BACKUP, "unseen", spec(minio_server, bucket))
        harness.wait_for_phase(kube_client, namespace, BACKUP, "unseen", {"Running"})
        operator.kill()
        harness.wait_for_finished_job(kube_client, namespace, "backup", "the backup Job to commit while the operator is down")
        stored = [k for k in harness.s3_keys(minio_server, bucket) if "/unseen/" in k]
        assert any(k.endswith("manifest.json") for k in stored), stored
        body = harness.get_resource(kube_client, namespace, BACKUP, "unseen")
        assert body is not None and body["status"]["phase"] == "Running" and not body["status"].get("artifact")
        harness.delete_resource(kube_client, namespace, BACKUP, "unseen")
        operator.start()
        harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, "unseen") is None,
                           timeout=180, message="the backup to be finalized")
        left = [k for k in harness.s3_keys(minio_server, bucket) if "/unseen/" in k]
        assert left == [], f"orphaned artifact: {left}"
        roles = [j["metadata"]["labels"].get("dbops.io/role") for j in harness.list_jobs(kube_client, namespace)]
        assert "delete" in roles


def test_a_backup_past_its_ttl_is_deleted_with_its_artifact(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, BACKUP, "short-lived", {**spec(minio_server, bucket), "ttl": "5s"})
    harness.eventually(lambda: [k for k in harness.s3_keys(minio_server, bucket)
                                if "/short-lived/" in k and k.endswith("manifest.json")],
                       timeout=240, message="the backup to be stored")
    harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, "short-lived") is None,
                       timeout=180, message="the backup to expire (ttl 5s) and be finalized")
    assert [k for k in harness.s3_keys(minio_server, bucket) if "/short-lived/" in k] == []
    assert operator.alive()



@pytest.mark.parametrize("step", ["waiting-for-the-backup-job", "delete-job-running", "delete-job-finished"])
def test_the_operator_killed_at_each_step_of_the_deletion_leaves_nothing_behind(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str, step: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    name = "killed"
    with harness.running_operator(installed_crds, namespace) as operator:
        harness.create_resource(kube_client, namespace, BACKUP, name, spec(minio_server, bucket))
        if step == "waiting-for-the-backup-job":
            harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Running"})
            harness.delete_resource(kube_client, namespace, BACKUP, name)  # the finalizer waits for the Job
            operator.kill()
            assert not [j for j in harness.role_jobs(kube_client, namespace, "backup") if harness.job_finished(j)], \
                "the backup Job finished before the operator was killed: this step was not reached"
            harness.wait_for_finished_job(kube_client, namespace, "backup",
                                          "the backup Job to commit while the operator is down")
        else:
            harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Succeeded"}, timeout=240)
            harness.delete_resource(kube_client, namespace, BACKUP, name)
            harness.eventually(lambda: harness.role_jobs(kube_client, namespace, "delete"), timeout=120,
                               message="the finalizer to start its artifact-deleting Job")
            operator.kill()
            if step == "delete-job-finished":
                harness.wait_for_finished_job(kube_client, namespace, "delete",
                                              "the delete Job to finish while the operator is down")
        body = harness.get_resource(kube_client, namespace, BACKUP, name)
        assert body is not None and body["metadata"].get("deletionTimestamp"), "the finalizer was not holding it"
        operator.start()
        harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, name) is None,
                           timeout=240, message="the backup to be finalized after the restart")
        left = [k for k in harness.s3_keys(minio_server, bucket) if f"/{name}/" in k]
        assert left == [], f"orphaned artifact ({step}): {left}"
        assert len(harness.role_jobs(kube_client, namespace, "delete")) <= 1
        assert "Traceback" not in operator.logs()


def test_a_backup_job_removed_with_its_result_while_the_operator_was_down_orphans_nothing(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    # The Job is deleted by hand once it committed: the operator holds a jobTemplate.ttlSecondsAfterFinished back
    # until it read the result (test_operator_lost_jobs.py), so only a deletion can take the result away now.
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    name = "vanished"
    with harness.running_operator(installed_crds, namespace) as operator:
        harness.create_resource(kube_client, namespace, BACKUP, name,
                                {**spec(minio_server, bucket), "jobTemplate": {"ttlSecondsAfterFinished": 0}})
        harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Running"})
        operator.kill()
        harness.eventually(lambda: [k for k in harness.s3_keys(minio_server, bucket)
                                    if f"/{name}/" in k and k.endswith("manifest.json")],
                           timeout=240, message="the backup Job to commit while the operator is down")
        harness.wait_for_finished_job(kube_client, namespace, "backup", "the backup Job to finish")
        for job in harness.role_jobs(kube_client, namespace, "backup"):
            harness.delete_job(kube_client, namespace, job["metadata"]["name"])
        harness.eventually(lambda: not harness.role_jobs(kube_client, namespace, "backup"), timeout=120,
                           message="the finished backup Job to be deleted")
        harness.delete_resource(kube_client, namespace, BACKUP, name)
        operator.start()
        harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, name) is None,
                           timeout=240, message="the backup to be finalized")
        left = [k for k in harness.s3_keys(minio_server, bucket) if f"/{name}/" in k]
        assert left == [], f"orphaned artifact: {left}"
        assert "Traceback" not in operator.logs()
