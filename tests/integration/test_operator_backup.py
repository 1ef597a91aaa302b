"""DatabaseBackup end to end: resource → Jobs → status, Events, artifacts in MinIO; bad credentials canary."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)
BACKUP = "DatabaseBackup"


def backup_spec(minio: MinioServer, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "storage": harness.s3_storage(minio, bucket), **extra}


def test_backup_runs_jobs_and_reports_the_artifact(operator: harness.RunningOperator, kube_client: Any,
                                                   namespace: str, postgres: PostgresServer, app_database: str,
                                                   minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, BACKUP, "nightly",
                            backup_spec(minio_server, bucket, deletionPolicy="Delete"))

    body = harness.wait_for_phase(kube_client, namespace, BACKUP, "nightly", {"Succeeded", "Failed"})
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    artifact = status["artifact"]
    assert artifact["uri"].startswith(f"s3://{bucket}/ops/{namespace}/")
    assert artifact["sizeBytes"] > 0 and len(artifact["sha256"]) == 64
    assert status["source"]["serverVersion"].startswith("18")
    assert status["verification"]["decoded"] is True
    assert status["observedGeneration"] == 1
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Succeeded"
    keys = harness.s3_keys(minio_server, bucket)
    assert any(key.endswith("/nightly/manifest.json") for key in keys)
    jobs = harness.list_jobs(kube_client, namespace)
    assert sorted(job["metadata"]["labels"]["dbops.io/role"] for job in jobs) == ["backup", "verify"]
    reasons = {event["reason"] for event in harness.wait_for_event(kube_client, namespace, "nightly",
                                                                   "BackupSucceeded")}
    assert {"BackupStarted", "VerificationStarted", "BackupSucceeded"} <= reasons

    harness.delete_resource(kube_client, namespace, BACKUP, "nightly")
    harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, "nightly") is None,
                       message="the backup to be finalized")
    harness.eventually(lambda: not any("/nightly/" in key for key in harness.s3_keys(minio_server, bucket)),
                       message="the artifact to be deleted (deletionPolicy: Delete)")


def test_a_deleted_backup_keeps_its_artifact_by_default(operator: harness.RunningOperator, kube_client: Any,
                                                        namespace: str, postgres: PostgresServer, app_database: str,
                                                        minio_server: MinioServer, bucket: str) -> None:
    # An Argo CD prune (or a careless kubectl delete) of a DatabaseBackup must not take the dump with it.
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    body = harness.create_resource(kube_client, namespace, BACKUP, "pruned", backup_spec(minio_server, bucket))
    assert body["spec"]["deletionPolicy"] == "Retain"
    harness.wait_for_phase(kube_client, namespace, BACKUP, "pruned", {"Succeeded"})
    harness.delete_resource(kube_client, namespace, BACKUP, "pruned")
    harness.eventually(lambda: harness.get_resource(kube_client, namespace, BACKUP, "pruned") is None,
                       message="the backup to be finalized")
    keys = harness.s3_keys(minio_server, bucket)
    assert any(key.endswith("/pruned/manifest.json") for key in keys), keys
    assert not [job for job in harness.list_jobs(kube_client, namespace)
                if job["metadata"]["labels"].get("dbops.io/role") == "delete"]


def test_bad_credentials_fail_clearly_and_the_password_leaks_nowhere(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    canary = f"canary{uuid.uuid4().hex}"
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database, password=canary),
                                                         "password": canary})
    harness.create_resource(kube_client, namespace, BACKUP, "badcreds", backup_spec(minio_server, bucket))
    spec = {"database": {"host": postgres.host, "port": postgres.port, "name": app_database, "user": postgres.user,
                         "passwordSecretRef": {"name": "db", "key": "password"}},
            "storage": harness.s3_storage(minio_server, bucket)}
    harness.create_resource(kube_client, namespace, BACKUP, "badcreds-fields", spec)

    for name in ("badcreds", "badcreds-fields"):
        body = harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Succeeded", "Failed"})
        assert body["status"]["phase"] == "Failed"
        ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "AuthenticationFailed", ready
    places = {
        "status": json.dumps(harness.list_resources(kube_client, namespace, BACKUP)),
        "events": json.dumps(harness.list_events(kube_client, namespace)),
        "jobs": json.dumps(harness.list_jobs(kube_client, namespace)),
        "pods": json.dumps(harness.list_pods(kube_client, namespace)),
        "operator logs": operator.logs(),
    }
    leaked = [place for place, text in places.items() if canary in text]
    assert leaked == []
    assert "badcreds" in places["operator logs"]


def test_missing_secret_is_reported_and_retried(operator: harness.RunningOperator, kube_client: Any,
                                                namespace: str, postgres: PostgresServer, app_database: str,
                                                minio_server: MinioServer, bucket: str) -> None:
    harness.create_resource(kube_client, namespace, BACKUP, "early", backup_spec(minio_server, bucket))

    def missing_reference() -> bool:
        body = harness.get_resource(kube_client, namespace, BACKUP, "early") or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c["reason"] == "MissingReference" and "db" in c["message"] for c in conditions)

    harness.eventually(missing_reference, message="a MissingReference condition")
    assert harness.list_jobs(kube_client, namespace) == []
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    body = harness.wait_for_phase(kube_client, namespace, BACKUP, "early", {"Succeeded", "Failed"}, timeout=300)
    assert body["status"]["phase"] == "Succeeded"
    assert operator.alive()
