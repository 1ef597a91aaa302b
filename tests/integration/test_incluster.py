"""dbops running in the cluster as users install it (Helm, kustomize): its own ServiceAccount, in-cluster config."""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbops_testbed import incluster, mentorhub
from dbops_testbed.controlplane import ControlPlane, running_control_plane
from dbops_testbed.executor import ProcessNodeExecutor
from dbops_testbed.minio import MinioServer
from dbops_testbed.ports import free_port
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(1200)
FORBIDDEN = re.compile(r"\bForbidden\b|\b403\b")


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ControlPlane, ProcessNodeExecutor]]:
    """A cluster of its own (the operator here watches every namespace), with the node."""
    with running_control_plane() as plane:
        if plane.external:
            pytest.skip("installs a cluster-wide operator: only on the test bed's own cluster")
        executor = ProcessNodeExecutor(plane.api_client())
        executor.start()
        try:
            yield plane, executor
        finally:
            executor.stop()


def operator_logs(plane: ControlPlane, executor: ProcessNodeExecutor, namespace: str) -> str:
    return "\n".join(executor.logs(namespace, p["metadata"]["name"]) for p in incluster.operator_pods(plane, namespace))


def jobs_of(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = incluster.get_json(plane, "jobs", "-n", namespace, "-l", f"dbops.io/name={name}")[
        "items"]
    return items


def hard_kill(pod: dict[str, Any]) -> None:
    """SIGKILL the operator container's processes (an OOM kill or a crash: no shutdown, the kubelet restarts it)."""
    (status,) = pod["status"]["containerStatuses"]
    pid = int(status["containerID"].removeprefix("process://"))  # the test bed runs containers as local processes
    assert os.getpgid(pid) == pid, "the container's main process leads its own group"
    os.killpg(pid, signal.SIGKILL)


def kill_operator_while_a_job_runs(plane: ControlPlane, operator_namespace: str, namespace: str,
                                   backup: dict[str, Any], how: str) -> None:
    """R23: the operator dies right after its first Job started (`how`: delete = a graceful pod deletion, force =
    --grace-period=0 --force, sigkill = the container killed in place); the Deployment's replacement (or the
    restarted container) adopts every Job and creates no second one, of any role."""
    name = backup["metadata"]["name"]
    incluster.apply(plane, namespace, [backup])
    incluster.eventually(lambda: jobs_of(plane, namespace, name), timeout=120, message=f"the Job of {name}",
                         interval=0.2)
    (pod,) = incluster.operator_pods(plane, operator_namespace)
    old, restarts = pod["metadata"]["name"], pod["status"]["containerStatuses"][0].get("restartCount", 0)
    if how == "sigkill":
        hard_kill(pod)
    else:
        grace = ["--grace-period=0", "--force"] if how == "force" else ["--grace-period=1"]
        plane.kubectl("-n", operator_namespace, "delete", "pod", old, *grace, "--wait=false")

    def replaced() -> list[dict[str, Any]]:
        return [p for p in incluster.operator_pods(plane, operator_namespace) if incluster.is_ready(p) and (
            p["metadata"]["name"] != old if how != "sigkill"
            else p["status"]["containerStatuses"][0].get("restartCount", 0) > restarts)]

    incluster.eventually(replaced, timeout=180, message=f"the operator to be back after a {how} kill")
    body = incluster.phase_of(plane, namespace, "DatabaseBackup", name, incluster.FINAL)
    assert body["status"]["phase"] == "Succeeded", body["status"]
    time.sleep(6)  # a recheck period: a second Job would show now
    roles = Counter(j["metadata"]["labels"].get("dbops.io/role") for j in jobs_of(plane, namespace, name))
    assert roles and set(roles.values()) == {1}, roles
    assert "backup" in roles, roles
    print(f"R23 ({how} kill): the operator was back, {name} Succeeded with one Job per role: {dict(roles)}")


def test_helm_chart_runs_the_operator_in_cluster(
        cluster: tuple[ControlPlane, ProcessNodeExecutor], postgres: PostgresServer, minio_server: MinioServer,
        bucket: str) -> None:
    plane, executor = cluster
    notes = incluster.helm_install(plane)
    assert "kubectl get dbops" in notes
    (pod,) = incluster.operator_pods(plane, "dbops-system")
    assert incluster.is_ready(pod) and pod["spec"]["serviceAccountName"] == "dbops-operator"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    namespace = "mentorhub"
    plane.kubectl("create", "namespace", namespace)
    database = mentorhub.create_database(postgres, f"mentorhub_{uuid.uuid4().hex[:8]}")
    documents = mentorhub.local_examples(postgres, database, minio_server, bucket)
    schedule = next(d for d in documents if d["kind"] == "DatabaseBackupSchedule")
    schedule["spec"]["retention"] = {"keepLast": 1}
    schedule["spec"]["backupTemplate"]["spec"]["verify"] = {"decode": False}
    pick = lambda *kinds: [d for d in documents if d["kind"] in kinds]  # noqa: E731
    incluster.apply(plane, namespace, pick("Secret", "ConfigMap", "DatabaseBackup", "DatabaseBackupSchedule",
                                           "DatabaseMigration"))

    backup = incluster.phase_of(plane, namespace, "DatabaseBackup", "mentorhub-before-release", incluster.FINAL)
    assert backup["status"]["phase"] == "Succeeded", backup["status"]
    assert backup["status"]["artifact"]["sha256"] and backup["status"]["artifact"]["sizeBytes"] > 0

    migration = incluster.phase_of(plane, namespace, "DatabaseMigration", "mentorhub-schema",
                                   {"AwaitingApproval", *incluster.FINAL})
    assert migration["status"]["phase"] == "AwaitingApproval", migration["status"]
    plane.kubectl("-n", namespace, "patch", "dbm", "mentorhub-schema", "--type=merge", "-p", json.dumps(
        {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": migration["status"]["plan"]["hash"]}}}))
    migration = incluster.phase_of(plane, namespace, "DatabaseMigration", "mentorhub-schema", incluster.FINAL)
    assert migration["status"]["phase"] == "Succeeded", migration["status"]
    pre = incluster.resource(plane, namespace, "DatabaseBackup", migration["status"]["backupName"])
    assert pre["status"]["phase"] == "Succeeded"

    # A migration failing on production data is rolled back by restoring its pre-migration backup.
    incluster.apply(plane, namespace, incluster.failing_migration(documents))
    failed = incluster.phase_of(plane, namespace, "DatabaseMigration", "mentorhub-schema-next", incluster.FINAL)
    assert failed["status"]["phase"] == "RolledBack", failed["status"]
    assert postgres.psql("SELECT count(*) FROM pg_constraint WHERE conname = 'bookings_one_per_mentor_day'",
                         database).strip() == "0"

    # Per-table restore: bookings deleted after the backup come back.
    bookings = postgres.psql("SELECT count(*) FROM mentorship_bookings", database).strip()
    postgres.psql("DELETE FROM mentorship_bookings WHERE status = 'pending'", database)
    incluster.apply(plane, namespace, pick("DatabaseRestore"))
    restore = incluster.phase_of(plane, namespace, "DatabaseRestore", "mentorhub-restore-bookings", incluster.FINAL)
    assert restore["status"]["phase"] == "Succeeded", restore["status"]
    assert postgres.psql("SELECT count(*) FROM mentorship_bookings", database).strip() == bookings

    # The schedule ticks through the real CronJob controller; retention keeps one.
    def pruned() -> dict[str, Any] | None:
        body = incluster.resource(plane, namespace, "DatabaseBackupSchedule", "mentorhub-nightly")
        status = body.get("status") or {}
        return body if status.get("prunedBackups", 0) >= 1 and status.get("lastSuccessfulBackup") else None
    incluster.eventually(pruned, timeout=420, message="two scheduled backups and the first pruned", interval=3)

    example = next(d for d in documents if d["kind"] == "DatabaseBackup")
    kill_operator_while_a_job_runs(plane, "dbops-system", namespace, {**example, "metadata": {"name": "killed-operator"}},
                                   "sigkill")
    kill_operator_while_a_job_runs(plane, "dbops-system", namespace, {**example, "metadata": {"name": "forced-operator"}},
                                   "force")
    assert not FORBIDDEN.search(operator_logs(plane, executor, "dbops-system"))

    # Upgrade to one watched namespace: it takes effect (a backup elsewhere is no longer served).
    incluster.helm(plane, "upgrade", "dbops", str(incluster.CHART), "-n", "dbops-system", "--reuse-values",
                   "--set-json", f'watchNamespaces=["{namespace}"]', "--wait", "--timeout", "240s")
    incluster.eventually(lambda: [p for p in incluster.operator_pods(plane, "dbops-system") if incluster.is_ready(p)
                                  and f"--namespace={namespace}" in p["spec"]["containers"][0]["args"]],
                         timeout=180, message="the upgraded operator pod")
    plane.kubectl("create", "namespace", "elsewhere")
    stray = {**next(d for d in documents if d["kind"] == "DatabaseBackup"), "metadata": {"name": "stray"}}
    incluster.apply(plane, "elsewhere", [stray])
    incluster.apply(plane, namespace, [{**stray, "metadata": {"name": "after-upgrade"}}])
    served = incluster.phase_of(plane, namespace, "DatabaseBackup", "after-upgrade", incluster.FINAL)
    assert served["status"]["phase"] == "Succeeded"
    assert not incluster.resource(plane, "elsewhere", "DatabaseBackup", "stray").get("status")
    assert not FORBIDDEN.search(operator_logs(plane, executor, "dbops-system"))

    # Uninstall: resources deleted first (as documented); what stays is the CRDs and the retained backups.
    plane.kubectl("-n", namespace, "delete", "dbbs,dbm,dbr", "--all", "--timeout=120s")
    output = incluster.helm(plane, "uninstall", "dbops", "-n", "dbops-system", "--wait").stdout
    assert "kept due to the resource policy" in output
    left = incluster.get_json(plane, "deployments,serviceaccounts,services,roles,rolebindings,clusterroles,"
                              "clusterrolebindings", "-A", "-l", "app.kubernetes.io/instance=dbops")["items"]
    assert left == []
    assert len(incluster.get_json(plane, "crd", "-l", "app.kubernetes.io/instance=dbops")["items"]) == 4
    kept = {b["metadata"]["name"] for b in incluster.get_json(plane, "dbb", "-n", namespace)["items"]}
    assert "mentorhub-before-release" in kept
    incluster.eventually(lambda: incluster.get_json(plane, "pods", "-n", "dbops-system")["items"] == [],
                         timeout=120, message="the operator pod to be gone")


def test_kustomize_runs_the_operator_in_cluster(
        cluster: tuple[ControlPlane, ProcessNodeExecutor], postgres: PostgresServer, minio_server: MinioServer,
        bucket: str) -> None:
    plane, executor = cluster
    health, metrics = free_port(), free_port()
    with tempfile.TemporaryDirectory() as overlay:
        # Pods share the host network on the test bed: an overlay moves the ports, as a user's overlay would.
        Path(overlay, "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [os.path.relpath(incluster.KUSTOMIZE, overlay)],
            "patches": [{"target": {"kind": "Deployment", "name": "dbops-operator"}, "patch": json.dumps([
                {"op": "replace", "path": "/spec/template/spec/containers/0/args",
                 "value": ["operator", "--all-namespaces", f"--metrics-port={metrics}", f"--health-port={health}",
                           "--trigger-cluster-role=dbops-trigger"]},
                {"op": "replace", "path": "/spec/template/spec/containers/0/ports",
                 "value": [{"name": "metrics", "containerPort": metrics}, {"name": "health", "containerPort": health}]},
            ])}]}))
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-k", overlay)
        plane.kubectl("-n", "dbops-system", "rollout", "status", "deployment/dbops-operator", "--timeout=240s")
        namespace = "team-k"
        plane.kubectl("create", "namespace", namespace)
        database = mentorhub.create_database(postgres, f"mentorhub_{uuid.uuid4().hex[:8]}", bookings=500)
        documents = mentorhub.local_examples(postgres, database, minio_server, bucket)
        incluster.apply(plane, namespace, [d for d in documents if d["kind"] in ("Secret", "ConfigMap")])
        example = next(d for d in documents if d["kind"] == "DatabaseBackup")
        kill_operator_while_a_job_runs(plane, "dbops-system", namespace, example, "delete")
        kill_operator_while_a_job_runs(plane, "dbops-system", namespace, {**example, "metadata": {"name": "hard"}},
                                       "sigkill")
        time.sleep(2)
        assert not FORBIDDEN.search(operator_logs(plane, executor, "dbops-system"))
        plane.kubectl("-n", namespace, "delete", "dbb", "--all", "--timeout=120s")
