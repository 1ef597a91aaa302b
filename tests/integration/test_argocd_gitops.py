"""GitOps flows as Argo CD drives them: server-side apply of the same manifests changes nothing; approval by Git."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration import operator_harness as harness
from tests.integration.test_operator_migration import NOTES, migration_spec

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[2]
MANAGER = "argocd-controller"


def apply(plane: ControlPlane, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    """`kubectl apply --server-side` as Argo CD's server-side apply does it."""
    output = plane.kubectl("-n", namespace, "apply", "--server-side", f"--field-manager={MANAGER}", "-o", "json",
                           "-f", "-", stdin=yaml.safe_dump(document))
    applied: dict[str, Any] = json.loads(output)
    return applied


def server_side_diff(plane: ControlPlane, namespace: str, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    binary = str(plane.bin_dir / "kubectl") if plane.bin_dir else "kubectl"
    return subprocess.run([binary, "--kubeconfig", str(plane.kubeconfig), "-n", namespace, "diff", "--server-side",
                           f"--field-manager={MANAGER}", "-f", "-"], input=yaml.safe_dump(document),
                          capture_output=True, text=True, check=False)


def settled(kube_client: Any, namespace: str, kind: str, name: str, quiet: float = 12.0) -> dict[str, Any]:
    """The resource once its resourceVersion stayed the same for `quiet` seconds (the operator is done)."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body = harness.get_resource(kube_client, namespace, kind, name) or {}
        version = body.get("metadata", {}).get("resourceVersion")
        if version != last:
            last, since = version, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{kind} {name} never settled")


def test_schedule_applied_again_server_side_changes_nothing(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str) -> None:
    # The example users copy: defaults are filled in by the API server, status is written by the operator,
    # and neither may make the Git manifest look out of sync.
    document = yaml.safe_load((ROOT / "manifests" / "examples" / "databasebackupschedule.yaml").read_text())
    apply(installed_crds, namespace, document)
    harness.wait_for_phase(kube_client, namespace, "DatabaseBackupSchedule", document["metadata"]["name"],
                           {"Active", "Pending"})
    before = settled(kube_client, namespace, "DatabaseBackupSchedule", document["metadata"]["name"])
    assert before["status"]["phase"] == "Active", before["status"]
    assert before["spec"]["backupTemplate"]["spec"]["deletionPolicy"] == "Delete"  # retention deletes what it prunes

    applied = apply(installed_crds, namespace, document)
    again = harness.get_resource(kube_client, namespace, "DatabaseBackupSchedule", document["metadata"]["name"]) or {}
    assert applied["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert again["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert again["metadata"]["managedFields"] == before["metadata"]["managedFields"]
    diff = server_side_diff(installed_crds, namespace, document)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    managers = {entry["manager"]: entry for entry in before["metadata"]["managedFields"]}
    # The operator owns status only: it never takes a spec field away from Git.
    for manager, entry in managers.items():
        if manager != MANAGER:
            assert entry.get("subresource") == "status" or "f:spec" not in entry.get("fieldsV1", {}), (manager, entry)


def test_approval_through_git_runs_the_migration(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str,
        postgres: PostgresServer, app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    document = {"apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseMigration",
                "metadata": {"name": "schema", "annotations": {"argocd.argoproj.io/sync-wave": "-1"}},
                "spec": migration_spec(NOTES, approval={"mode": "Manual"}, preChecks={"enabled": False})}
    apply(installed_crds, namespace, document)
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "schema", {"AwaitingApproval", "Failed"})
    assert body["status"]["phase"] == "AwaitingApproval", body["status"]
    plan_hash = body["status"]["plan"]["hash"]
    assert postgres.psql("SELECT to_regclass('notes') IS NULL", app_database).strip() == "t"

    # The reviewer reads status.plan, commits the hash; Argo CD applies the commit.
    document["spec"]["approval"]["approvedPlanHash"] = plan_hash
    apply(installed_crds, namespace, document)
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "schema", {"Succeeded", "Failed"})
    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert postgres.psql("SELECT to_regclass('notes') IS NOT NULL", app_database).strip() == "t"
    done = settled(kube_client, namespace, "DatabaseMigration", "schema")
    again = apply(installed_crds, namespace, document)
    assert again["metadata"]["resourceVersion"] == done["metadata"]["resourceVersion"]
