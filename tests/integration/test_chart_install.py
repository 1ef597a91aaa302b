"""The chart and manifests/operator against a real API server: dry-run, install, upgrade, uninstall, kustomize."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbops_testbed.binaries import helm_bin
from dbops_testbed.controlplane import ControlPlane, running_control_plane

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "dbops"
KUSTOMIZE = ROOT / "manifests" / "operator"
CRD_NAMES = [f"{plural}.dbops.io" for plural in
             ("databasebackups", "databasebackupschedules", "databasemigrations", "databaserestores")]


@pytest.fixture(scope="module")
def fresh_cluster() -> Iterator[ControlPlane]:
    """A control plane of its own: these tests install and remove CRDs and cluster-wide RBAC."""
    with running_control_plane() as plane:
        if plane.external:
            pytest.skip("installs and uninstalls cluster-scoped objects: only on the test bed's own cluster")
        yield plane


def helm(plane: ControlPlane, *args: str, check: bool = True) -> str:
    completed = subprocess.run([str(helm_bin()), "--kubeconfig", str(plane.kubeconfig), *args],
                               capture_output=True, text=True, timeout=300, check=False)
    if check and completed.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {completed.stderr}")
    return completed.stdout + completed.stderr


def kubectl_run(plane: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(plane.bin_dir / "kubectl"), "--kubeconfig", str(plane.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def objects(plane: ControlPlane, kinds: str, selector: str, *, all_namespaces: bool = True) -> list[dict[str, Any]]:
    args = ["get", kinds, "-l", selector, "-o", "json"] + (["-A"] if all_namespaces else [])
    items: list[dict[str, Any]] = json.loads(plane.kubectl(*args))["items"]
    return items


def create_namespace(plane: ControlPlane, name: str) -> None:
    kubectl_run(plane, "create", "namespace", name)


def test_rendered_chart_and_kustomize_pass_server_side_dry_run(fresh_cluster: ControlPlane) -> None:
    plane = fresh_cluster
    create_namespace(plane, "dbops-system")
    plane.kubectl("label", "--overwrite", "namespace", "dbops-system", "pod-security.kubernetes.io/enforce=restricted",
                  "pod-security.kubernetes.io/warn=restricted")
    for variant in ([], ["--set-json", 'watchNamespaces=["dbops-system"]', "--set", "metrics.service.enabled=false"]):
        rendered = helm(plane, "template", "dbops", str(CHART), "-n", "dbops-system", *variant, check=True)
        completed = kubectl_run(plane, "create", "--dry-run=server", "--validate=strict", "-f", "-", stdin=rendered)
        assert completed.returncode == 0, completed.stderr
        assert "PodSecurity" not in completed.stderr and "Warning" not in completed.stderr, completed.stderr
    kustomized = plane.kubectl("kustomize", str(KUSTOMIZE))
    without_namespace = yaml.safe_dump_all(d for d in yaml.safe_load_all(kustomized) if d and d["kind"] != "Namespace")
    completed = kubectl_run(plane, "create", "--dry-run=server", "--validate=strict", "-f", "-", stdin=without_namespace)
    assert completed.returncode == 0, completed.stderr
    assert "Warning" not in completed.stderr, completed.stderr


def test_helm_install_upgrade_and_uninstall(fresh_cluster: ControlPlane) -> None:
    plane = fresh_cluster
    create_namespace(plane, "team-a")
    output = helm(plane, "install", "dbops", str(CHART), "-n", "dbops-ops", "--create-namespace",
                  "--set-json", 'watchNamespaces=["team-a","on","not-yet"]')
    # A namespace that does not exist yet is reported, not a failed release.
    assert 'namespace "on" does not exist yet' in output and 'namespace "not-yet" does not exist yet' in output
    assert "rollout status deployment/dbops-operator" in output
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in CRD_NAMES])
    roles = objects(plane, "roles", "app.kubernetes.io/instance=dbops")
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a"]
    deployment = json.loads(plane.kubectl("-n", "dbops-ops", "get", "deployment", "dbops-operator", "-o", "json"))
    assert "--namespace=on" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    # The namespaces appear; an upgrade grants the operator its rights there.
    create_namespace(plane, "on")
    create_namespace(plane, "not-yet")
    helm(plane, "upgrade", "dbops", str(CHART), "-n", "dbops-ops", "--reuse-values")
    roles = objects(plane, "roles", "app.kubernetes.io/instance=dbops")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["not-yet", "on", "team-a"]
    can_i = plane.kubectl("auth", "can-i", "create", "jobs.batch", "-n", "on",
                          "--as=system:serviceaccount:dbops-ops:dbops-operator", check=False)
    assert can_i.strip() == "yes"

    # Back to every namespace: one ClusterRole, no Roles left behind.
    helm(plane, "upgrade", "dbops", str(CHART), "-n", "dbops-ops", "--set-json", "watchNamespaces=[]")
    assert objects(plane, "roles", "app.kubernetes.io/instance=dbops") == []
    assert plane.kubectl("auth", "can-i", "update", "databasebackups.dbops.io", "--subresource=finalizers", "-n", "kube-system",
                         "--as=system:serviceaccount:dbops-ops:dbops-operator", check=False).strip() == "yes"
    # The upgrade re-applied the CRDs (templates, not crds/): Helm owns them.
    crd = json.loads(plane.kubectl("get", "crd", CRD_NAMES[0], "-o", "json"))
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "dbops"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    plane.kubectl("create", "-n", "team-a", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseBackup", "metadata": {"name": "kept"},
        "spec": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                 "storage": {"pvc": {"claimName": "backups"}}}}))
    output = helm(plane, "uninstall", "dbops", "-n", "dbops-ops")
    assert "These resources were kept due to the resource policy" in output
    left = objects(plane, "deployments,serviceaccounts,services,roles,rolebindings,clusterroles,clusterrolebindings",
                   "app.kubernetes.io/instance=dbops")
    assert left == []
    assert sorted(c["metadata"]["name"] for c in objects(plane, "crd", "app.kubernetes.io/instance=dbops")) == \
        sorted(CRD_NAMES)
    assert json.loads(plane.kubectl("-n", "team-a", "get", "dbb", "kept", "-o", "json"))["metadata"]["name"] == "kept"


def test_kubectl_apply_k_installs_the_operator(fresh_cluster: ControlPlane) -> None:
    plane = fresh_cluster
    completed = kubectl_run(plane, "apply", "--server-side", "--force-conflicts", "-k", str(KUSTOMIZE))
    assert completed.returncode == 0, completed.stderr
    deployment = json.loads(plane.kubectl("-n", "dbops-system", "get", "deployment", "dbops-operator", "-o", "json"))
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "dbops", "app.kubernetes.io/instance": "dbops",
        "app.kubernetes.io/component": "operator"}
    assert plane.kubectl("auth", "can-i", "create", "jobs.batch", "-n", "default",
                         "--as=system:serviceaccount:dbops-system:dbops-operator", check=False).strip() == "yes"
    assert plane.kubectl("auth", "can-i", "list", "secrets", "-n", "default",
                         "--as=system:serviceaccount:dbops-system:dbops-operator", check=False).strip() == "no"
    assert plane.kubectl("auth", "can-i", "create", "roles", "-n", "default",
                         "--as=system:serviceaccount:dbops-system:dbops-operator", check=False).strip() == "no"
    # RoleBindings: to the trigger ClusterRole only (bind by resourceNames), never to anything broader.
    operator = "--as=system:serviceaccount:dbops-system:dbops-operator"
    trigger = kubectl_run(plane, "-n", "default", "create", "rolebinding", "nightly-trigger", operator,
                          "--clusterrole=dbops-trigger", "--serviceaccount=default:nightly-trigger")
    assert trigger.returncode == 0, trigger.stderr
    admin = kubectl_run(plane, "-n", "default", "create", "rolebinding", "escalate", operator,
                        "--clusterrole=admin", "--serviceaccount=default:nightly-trigger")
    assert admin.returncode != 0 and "forbidden" in admin.stderr.lower(), admin.stderr
    completed = kubectl_run(plane, "delete", "-k", str(KUSTOMIZE), "--wait=false")
    assert completed.returncode == 0, completed.stderr
