"""The operator's ClusterRole (manifests/operator/rbac.yaml) is enough: backup and restore as that ServiceAccount."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.fixtures.cluster import read_json
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)
RBAC = Path(__file__).resolve().parents[2] / "manifests" / "operator" / "rbac.yaml"


def service_account_kubeconfig(control_plane: ControlPlane, kube_client: Any, namespace: str,
                               edit_role: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A kubeconfig authenticating as the ServiceAccount `dbops-operator` bound to the operator ClusterRole
    (changed by ``edit_role`` first, to take a permission away)."""
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "dbops-operator"}}, _preload_content=False)
    documents = list(yaml.safe_load_all(RBAC.read_text()))
    role = next(d for d in documents if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "dbops-operator")
    role["metadata"]["name"] = f"dbops-operator-{namespace}"
    trigger = next(d for d in documents if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "dbops-trigger")
    trigger["metadata"]["name"] = f"dbops-trigger-{namespace}"
    for rule in role["rules"]:
        if rule.get("resourceNames") == ["dbops-trigger"]:
            rule["resourceNames"] = [trigger["metadata"]["name"]]
    if edit_role is not None:
        edit_role(role)
    binding = next(d for d in documents if d["kind"] == "ClusterRoleBinding")
    binding["metadata"]["name"] = f"dbops-operator-{namespace}"
    binding["roleRef"]["name"] = role["metadata"]["name"]
    binding["subjects"][0]["namespace"] = namespace
    rbac_api = client.RbacAuthorizationV1Api(kube_client)
    rbac_api.create_cluster_role(role, _preload_content=False)
    rbac_api.create_cluster_role(trigger, _preload_content=False)
    rbac_api.create_cluster_role_binding(binding, _preload_content=False)
    token = read_json(core.create_namespaced_service_account_token(
        "dbops-operator", namespace, {"spec": {"expirationSeconds": 3600}}, _preload_content=False))["status"]["token"]
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    context["context"]["user"] = "dbops-operator"
    config["users"] = [{"name": "dbops-operator", "user": {"token": token}}]
    path = Path(tempfile.mkstemp(prefix="dbops-sa-", suffix=".kubeconfig")[1])
    path.write_text(yaml.safe_dump(config))
    return path


def test_backup_and_restore_work_with_only_the_operator_cluster_role(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    kubeconfig = service_account_kubeconfig(installed_crds, kube_client, namespace)
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    try:
        with harness.running_operator(installed_crds, namespace, kubeconfig=kubeconfig) as operator:
            harness.create_resource(kube_client, namespace, "DatabaseBackup", "rbac", {
                "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                "storage": harness.s3_storage(minio_server, bucket)})
            body = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "rbac", {"Succeeded", "Failed"})
            assert body["status"]["phase"] == "Succeeded", body["status"]
            harness.create_resource(kube_client, namespace, "DatabaseRestore", "rbac", {
                "source": {"backupRef": {"name": "rbac"}},
                "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}},
                "clean": True, "confirmOverwrite": app_database,
                "safetyBackup": {"enabled": True, "storage": harness.s3_storage(minio_server, bucket)}})
            body = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "rbac", {"Succeeded", "Failed"})
            assert body["status"]["phase"] == "Succeeded", body["status"]
            # A UID can contain "403": look for the status code as a word.
            assert not re.search(r"\bForbidden\b|\b403\b", operator.logs())
    finally:
        kubeconfig.unlink(missing_ok=True)
        rbac_api = client.RbacAuthorizationV1Api(kube_client)
        rbac_api.delete_cluster_role_binding(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-trigger-{namespace}", _preload_content=False)


def test_schedule_works_with_only_the_generated_rbac_and_the_trigger_cluster_role(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    # The operator writes no Role: the trigger ServiceAccount is bound to the installed ClusterRole, which the
    # operator may only bind (resourceNames); the CronJob's pod then creates a backup with those rights alone.
    kubeconfig = service_account_kubeconfig(installed_crds, kube_client, namespace)
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    try:
        with harness.running_operator(installed_crds, namespace, f"--trigger-cluster-role=dbops-trigger-{namespace}",
                                      kubeconfig=kubeconfig) as operator:
            harness.create_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely", {
                "schedule": "*/1 * * * *",
                "backupTemplate": {"spec": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                                            "storage": harness.s3_storage(minio_server, bucket),
                                            "verify": {"decode": False}}},
                "retention": {"keepLast": 3}})
            backups = harness.eventually(
                lambda: [b for b in harness.list_resources(kube_client, namespace, "DatabaseBackup")
                         if (b.get("status") or {}).get("phase") == "Succeeded"] or None,
                timeout=300, message="a scheduled backup created by the trigger pod")
            assert backups[0]["metadata"]["name"].startswith("minutely-")
            rbac_api = client.RbacAuthorizationV1Api(kube_client)
            assert read_json(rbac_api.list_namespaced_role(namespace, _preload_content=False))["items"] == []
            binding = read_json(rbac_api.list_namespaced_role_binding(namespace, _preload_content=False))["items"][0]
            assert binding["roleRef"]["kind"] == "ClusterRole"
            assert not re.search(r"\bForbidden\b|\b403\b", operator.logs())
    finally:
        kubeconfig.unlink(missing_ok=True)
        rbac_api = client.RbacAuthorizationV1Api(kube_client)
        rbac_api.delete_cluster_role_binding(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-trigger-{namespace}", _preload_content=False)
