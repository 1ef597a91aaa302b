"""A Job whose pod can never start (an image that cannot be pulled, a Secret key the kubelet cannot find) fails its
resource with a reason naming the Job, container, image and the kubelet's message, a Warning Event, and the Job
deleted, within the start grace (short here: --start-grace-seconds 4), instead of waiting forever."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.reconcile.pod_start import CONTAINER_CONFIG_ERROR, start_problem
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
DATABASE = {"uriSecretRef": {"name": "db", "key": "uri"}}
GRACE = ("--start-grace-seconds", "4")
TYPO = "registry.example/mentorhub-typo:1.4"


@pytest.fixture
def quick_operator(installed_crds: ControlPlane, namespace: str) -> Iterator[harness.RunningOperator]:
    """An operator that fails a pod that cannot start after 4 s."""
    with harness.running_operator(installed_crds, namespace, *GRACE) as running:
        yield running


def failed(kube_client: Any, namespace: str, kind: str, name: str) -> dict[str, Any]:
    body = harness.wait_for_phase(kube_client, namespace, kind, name, {"Succeeded", "Failed", "RolledBack"},
                                  timeout=240)
    assert body["status"]["phase"] == "Failed", body["status"]
    ready = {c["type"]: c for c in body["status"]["conditions"]}["Ready"]
    return dict(ready)


def warnings(kube_client: Any, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    return harness.eventually(lambda: [e for e in harness.list_events(kube_client, namespace)
                                       if e["involvedObject"]["name"] == name and e["type"] == "Warning"
                                       and reason in (e["reason"], e["message"].split(":", 1)[0])],
                              timeout=60, message=f"a Warning Event {reason} on {name}")


def jobs_gone(kube_client: Any, namespace: str, role: str) -> None:
    harness.eventually(lambda: not [j for j in harness.list_jobs(kube_client, namespace)
                                    if j["metadata"]["labels"].get("dbops.io/role") == role
                                    and not j["metadata"].get("deletionTimestamp")],
                       timeout=60, message=f"the {role} Job deleted")


def test_a_backup_whose_job_template_image_cannot_be_pulled_fails_image_pull_failed(
        quick_operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, s3_secret: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseBackup", "typo", {
        "database": DATABASE, "storage": harness.s3_storage(minio_server, bucket),
        "jobTemplate": {"image": "ghcr.io/dbops/dbosp:0.1.0"}})
    ready = failed(kube_client, namespace, "DatabaseBackup", "typo")
    assert ready["reason"] == "ImagePullFailed", ready
    assert "container runner (image ghcr.io/dbops/dbosp:0.1.0) cannot start" in ready["message"], ready
    assert "ImagePullBackOff" in ready["message"] or "ErrImagePull" in ready["message"], ready
    assert warnings(kube_client, namespace, "typo", "ImagePullFailed")
    jobs_gone(kube_client, namespace, "backup")
    assert "Traceback" not in quick_operator.logs()


def test_an_unparseable_image_fails_at_once_whatever_the_grace(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, s3_secret: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    with harness.running_operator(installed_crds, namespace, "--start-grace-seconds", "3600") as running:
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "upper", {
            "database": DATABASE, "storage": harness.s3_storage(minio_server, bucket),
            "jobTemplate": {"image": "Registry.example/DBOPS:0.1.0"}})
        ready = failed(kube_client, namespace, "DatabaseBackup", "upper")
        assert ready["reason"] == "ImagePullFailed" and "InvalidImageName" in ready["message"], ready
        assert "Traceback" not in running.logs()


def test_a_wrong_operator_runner_image_fails_the_backup(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, s3_secret: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    # a typo in the chart's image (its --image): every runner Job would wait forever
    with harness.running_operator(installed_crds, namespace, *GRACE, "--image", "ghcr.io/dbops/dbops-rnner:0.1.0"):
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "runner", {
            "database": DATABASE, "storage": harness.s3_storage(minio_server, bucket)})
        ready = failed(kube_client, namespace, "DatabaseBackup", "runner")
    assert ready["reason"] == "ImagePullFailed" and "dbops-rnner:0.1.0" in ready["message"], ready


def test_a_command_migration_without_plan_and_an_unknown_image_fails(
        quick_operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseMigration", "cmd", {
        "database": DATABASE, "preChecks": {"enabled": False},
        "source": {"command": {"image": TYPO, "command": [sys.executable, "-c", "print('migrated')"],
                               "plan": "Disabled"}}})
    ready = failed(kube_client, namespace, "DatabaseMigration", "cmd")
    assert ready["reason"] == "ImagePullFailed" and f"(image {TYPO}) cannot start" in ready["message"], ready
    assert warnings(kube_client, namespace, "cmd", "ImagePullFailed")
    jobs_gone(kube_client, namespace, "command")


def test_a_smoke_test_with_an_unknown_image_fails_the_migration(
        quick_operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseMigration", "smoke", {
        "database": DATABASE, "baselineVersion": "0", "lint": {"enabled": False},
        "source": {"inline": [{"version": "1", "name": "note", "up": "CREATE TABLE release_notes (id int);"}]},
        "verify": {"jobs": [{"name": "api", "image": TYPO, "command": ["true"]}]}})
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "smoke",
                                  {"Succeeded", "Failed", "RolledBack"}, timeout=240)
    status = body["status"]
    assert status["phase"] == "Failed", status
    smoke = status["smokeTests"][0]
    assert smoke["state"] == "Failed" and f"(image {TYPO}) cannot start" in smoke["message"], smoke
    assert TYPO in status["message"], status
    assert any(TYPO in e["message"] for e in warnings(kube_client, namespace, "smoke", "SmokeTestFailed"))
    jobs_gone(kube_client, namespace, "smoke")


def test_the_test_bed_kubelet_reports_a_missing_secret_key_as_the_rule_expects(
        installed_crds: ControlPlane, kube_client: Any, namespace: str) -> None:
    """A Job whose env reads a key its Secret lacks waits in CreateContainerConfigError naming the key; the rule
    reads that from the real pod status (the operator checks its own references first, so a key removed after
    that check is how this reaches one of its Jobs)."""
    harness.create_secret(kube_client, namespace, "app", {"token": "x"})
    client.BatchV1Api(kube_client).create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "needs-key"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "dbops:test", "command": ["true"],
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app", "key": "password"}}}]}]}}}})

    def problem() -> Any:
        pods = [p for p in harness.list_pods(kube_client, namespace)
                if p["metadata"].get("labels", {}).get("job-name") == "needs-key"]
        return start_problem("needs-key", pods, now=datetime.now(UTC), grace=0)

    found = harness.eventually(problem, timeout=60, message="the pod waiting in CreateContainerConfigError")
    assert found.reason == CONTAINER_CONFIG_ERROR and found.terminal
    assert "couldn't find key password in Secret" in found.message and "(image dbops:test)" in found.message
