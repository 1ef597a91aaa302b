"""R16: in a namespace enforcing Pod Security `restricted`, the real admission admits the pod of every Job kind the
operator creates: backup, verify, restore, delete, the CronJob's trigger, a SQL migration's check, plan, rehearse,
apply and smoke Jobs, a command migration's plan, plan confirmation, command and verify Jobs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(1200)
FINAL = {"Succeeded", "Failed", "RolledBack"}
MANAGE = Path(__file__).parent / "django_app" / "manage.py"
ROLES = {"backup", "verify", "restore", "delete", "trigger", "check", "plan", "rehearse", "apply", "smoke", "command"}
NOTES = [{"version": "0001", "name": "create_notes", "up": "CREATE TABLE notes (id int PRIMARY KEY);"},
         {"version": "0002", "name": "notes_index", "up": "CREATE INDEX notes_id ON notes (id);"}]
SMOKE = "import os, psycopg\npsycopg.connect(os.environ['DATABASE_URL']).execute('SELECT count(*) FROM notes')\n"


@pytest.fixture(scope="module", params=(15, 18), ids=lambda major: f"pg{major}")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """Both supported majors (the shared operator fixtures run PostgreSQL 18 only)."""
    with running_postgres(request.param) as server:
        yield server


def test_every_job_kind_is_admitted_in_a_restricted_namespace(
        installed_crds: ControlPlane, kube_client: Any, restricted_namespace: str, minio_server: MinioServer,
        postgres: PostgresServer, app_database: str, bucket: str) -> None:
    namespace = restricted_namespace
    labels = client.CoreV1Api(kube_client).read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    scratch = f"{app_database}_django"
    postgres.create_database(scratch)
    harness.create_secret(kube_client, namespace, "s3", {"AWS_ACCESS_KEY_ID": minio_server.access_key,
                                                         "AWS_SECRET_ACCESS_KEY": minio_server.secret_key})
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database),
                                                         "django": postgres.uri(scratch)})
    storage = harness.s3_storage(minio_server, bucket)
    database = {"uriSecretRef": {"name": "db", "key": "uri"}}
    try:
        with harness.running_operator(installed_crds, namespace) as operator:
            harness.create_resource(kube_client, namespace, "DatabaseBackup", "first",
                                    {"database": database, "storage": storage, "deletionPolicy": "Delete"})
            harness.create_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely", {
                "schedule": "*/1 * * * *", "backupTemplate": {"spec": {
                    "database": database, "storage": storage, "verify": {"decode": False}}}})
            harness.create_resource(kube_client, namespace, "DatabaseMigration", "django", {
                "database": {"uriSecretRef": {"name": "db", "key": "django"}}, "approval": {"mode": "Manual"},
                "source": {"command": {"image": "registry.example/mentorhub:1.4",
                                       "command": [sys.executable, str(MANAGE), "migrate", "--noinput"]}}})
            harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "first", {"Succeeded"}, timeout=300)
            harness.create_resource(kube_client, namespace, "DatabaseRestore", "back", {
                "source": {"backupRef": {"name": "first"}}, "target": {"database": database},
                "clean": True, "confirmOverwrite": app_database})
            assert harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "back", FINAL,
                                          timeout=300)["status"]["phase"] == "Succeeded"
            harness.create_resource(kube_client, namespace, "DatabaseMigration", "sql", {
                "database": database, "source": {"inline": NOTES}, "baselineVersion": "0000",
                "rehearsal": {"enabled": True, "backupRef": {"name": "first"}},
                "verify": {"jobs": [{"name": "api", "image": "registry.example/mentorhub:1.4",
                                     "command": [sys.executable, "-c", SMOKE]}]}})
            status = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "django",
                                            {"AwaitingApproval", *FINAL}, timeout=300)["status"]
            assert status["phase"] == "AwaitingApproval", status
            client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "databasemigrations", "django",
                {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": status["plan"]["hash"]}}},
                _preload_content=False)
            for name in ("sql", "django"):
                body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", name, FINAL, timeout=400)
                assert body["status"]["phase"] == "Succeeded", body["status"]

            def scheduled() -> dict[str, Any] | None:
                body = harness.get_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely") or {}
                return body if (body.get("status") or {}).get("lastSuccessfulBackup") else None

            harness.eventually(scheduled, timeout=240, message="a scheduled backup to succeed")
            jobs_before_delete = harness.list_jobs(kube_client, namespace)
            harness.delete_resource(kube_client, namespace, "DatabaseBackup", "first")
            deleting = harness.eventually(lambda: [j for j in harness.list_jobs(kube_client, namespace)
                                                   if j["metadata"]["labels"].get("dbops.io/role") == "delete"],
                                          timeout=120, message="the delete Job")
            harness.eventually(lambda: harness.get_resource(kube_client, namespace, "DatabaseBackup", "first")
                               is None, timeout=180, message="the backup and its artifacts to be deleted")
            assert operator.alive()
            roles = {job["metadata"]["labels"].get("dbops.io/role") for job in jobs_before_delete + deleting}
            pods = harness.list_pods(kube_client, namespace)
        rejected = [e for e in harness.list_events(kube_client, namespace)
                    if e["reason"] in ("FailedCreate", "FailedCreatePod") or "forbidden" in e.get("message", "")]
        assert rejected == [], json.dumps(rejected, indent=1)[:3000]
        plan_jobs = [j for j in jobs_before_delete if j["metadata"]["labels"].get("dbops.io/role") == "plan"
                     and j["metadata"]["labels"].get("dbops.io/name") == "django"]
        assert len(plan_jobs) == 2, [j["metadata"]["name"] for j in plan_jobs]  # the plan, then its confirmation
        assert roles >= ROLES, ROLES - roles
        pod_roles = {p["metadata"].get("labels", {}).get("dbops.io/role") for p in pods}
        trigger_pods = [p for p in pods if p["metadata"].get("labels", {}).get("job-name", "").startswith("minutely")]
        assert ROLES - {"delete", "trigger"} <= pod_roles, ROLES - pod_roles
        assert trigger_pods or "trigger" in pod_roles, "no pod of the CronJob's trigger Job"
        print(f"R16 on PostgreSQL {postgres.major}: {len(jobs_before_delete) + len(deleting)} Jobs, roles {sorted(roles)}, "
              f"{len(pods)} pods admitted, 0 rejected")
    finally:
        postgres.drop_database(scratch)
