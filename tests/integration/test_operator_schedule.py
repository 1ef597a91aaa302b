"""DatabaseBackupSchedule end to end: the real CronJob controller fires `dbops trigger backup`, retention prunes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)


def test_schedule_creates_backups_every_minute_and_prunes_beyond_keep_last(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely", {
        "schedule": "*/1 * * * *",
        "backupTemplate": {"metadata": {"labels": {"team": "db"}}, "spec": {
            "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "storage": harness.s3_storage(minio_server, bucket), "verify": {"decode": False}}},
        "retention": {"keepLast": 1},
    })
    schedule = harness.wait_for_phase(kube_client, namespace, "DatabaseBackupSchedule", "minutely", {"Active"})
    assert schedule["status"]["cronJobName"]

    seen: set[str] = set()

    def pruned_one() -> dict[str, Any] | None:
        seen.update(b["metadata"]["name"] for b in harness.list_resources(kube_client, namespace, "DatabaseBackup"))
        body = harness.get_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely") or {}
        status = body.get("status") or {}
        return body if status.get("prunedBackups", 0) >= 1 and status.get("lastSuccessfulBackup") else None

    body = harness.eventually(pruned_one, timeout=420, message="a second scheduled backup and a pruned first one")
    status = body["status"]
    assert status["retainedBackups"] == 1
    assert status["lastSuccessfulBackup"]["name"].startswith("minutely-")
    assert status["lastScheduleTime"]

    def pruned_and_gone() -> set[str] | None:
        existing = {b["metadata"]["name"] for b in harness.list_resources(kube_client, namespace, "DatabaseBackup")}
        pruned = seen - existing
        stored = {key.split("/")[-2] for key in harness.s3_keys(minio_server, bucket) if key.endswith("manifest.json")}
        return pruned if pruned and not (pruned & stored) else None

    pruned = harness.eventually(pruned_and_gone, timeout=180,
                                message="pruned backups and their artifacts to disappear from MinIO")
    assert all(name.startswith("minutely-") for name in pruned)
    backups = harness.list_resources(kube_client, namespace, "DatabaseBackup")
    assert backups and all(b["metadata"]["labels"]["team"] == "db" for b in backups)
    roles = {job["metadata"]["labels"].get("dbops.io/role") for job in harness.list_jobs(kube_client, namespace)}
    assert "trigger" in roles

    # Deleting the schedule keeps the backups it made and their artifacts (as Velero and K8up do): they are
    # labelled with it, not its dependents. The CronJob goes with the schedule.
    kept = {b["metadata"]["name"] for b in backups if (b.get("status") or {}).get("phase") == "Succeeded"}
    assert kept
    harness.delete_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely")
    batch = client.BatchV1Api(kube_client)
    harness.eventually(lambda: harness.get_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely")
                       is None and not batch.list_namespaced_cron_job(namespace).items,
                       timeout=120, message="the schedule and its CronJob to be gone")
    remaining = {b["metadata"]["name"] for b in harness.list_resources(kube_client, namespace, "DatabaseBackup")}
    stored = {key.split("/")[-2] for key in harness.s3_keys(minio_server, bucket) if key.endswith("manifest.json")}
    assert kept <= remaining and kept <= stored, (kept, remaining, stored)
