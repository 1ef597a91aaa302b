"""PVC storage end to end: backups, verification, restores, retention and deletion on a real bound volume.

The claim is provisioned by the test bed's host-directory provisioner and bound by the real
persistentvolume-binder controller; the runner Jobs (uid 65532) mount the bound volume's directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import read_json
from tests.integration import operator_harness as harness

from dbops_testbed.executor import ProcessNodeExecutor
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
DATABASE = {"uriSecretRef": {"name": "db", "key": "uri"}}


@pytest.fixture
def claim_dir(kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None) -> Path | None:
    """A bound ReadWriteOnce claim `backups`; the host directory of its volume (None on a real cluster)."""
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})

    def bound() -> dict[str, Any] | None:
        body = read_json(core.read_namespaced_persistent_volume_claim("backups", namespace, _preload_content=False))
        return body if body.get("status", {}).get("phase") == "Bound" else None

    claim = harness.eventually(bound, timeout=60, message="the claim to be bound")
    volume = read_json(core.read_persistent_volume(claim["spec"]["volumeName"], _preload_content=False))
    if node_executor is None or "hostPath" not in volume["spec"]:
        return None
    return Path(volume["spec"]["hostPath"]["path"])


def pvc_storage(path: str = "") -> dict[str, Any]:
    return {"pvc": {"claimName": "backups", **({"path": path} if path else {})}}


def stored_manifests(directory: Path | None) -> dict[str, dict[str, Any]]:
    """manifest.json files on the volume, by the name of the backup directory holding them."""
    if directory is None:
        return {}
    return {path.parent.name: json.loads(path.read_text()) for path in directory.rglob("manifest.json")}


def test_backup_verify_restore_and_delete_on_a_pvc(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, claim_dir: Path | None) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseBackup", "before", {
        "database": DATABASE, "storage": pvc_storage("ops"), "deletionPolicy": "Delete"})
    status = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "before",
                                    {"Succeeded", "Failed"})["status"]
    assert status["phase"] == "Succeeded", status
    assert status["verification"]["decoded"] is True
    artifact = status["artifact"]
    assert artifact["sizeBytes"] > 0 and len(artifact["sha256"]) == 64
    if claim_dir is not None:
        # The runner wrote to the bound volume's directory, and the checksum is the file's.
        assert "before" in stored_manifests(claim_dir / "ops")
        dumps = [p for p in (claim_dir / "ops").rglob("*") if p.is_file() and p.stat().st_size == artifact["sizeBytes"]]
        assert any(hashlib.sha256(p.read_bytes()).hexdigest() == artifact["sha256"] for p in dumps), dumps

    postgres.psql("DELETE FROM bookings WHERE id > 100; DROP TABLE users CASCADE;", app_database)
    harness.create_resource(kube_client, namespace, "DatabaseRestore", "undo", {
        "source": {"backupRef": {"name": "before"}}, "target": {"database": DATABASE},
        "clean": True, "confirmOverwrite": app_database,
        "safetyBackup": {"enabled": True, "storage": pvc_storage("safety")},
    })
    restore = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "undo", {"Succeeded", "Failed"},
                                     timeout=400)["status"]
    assert restore["phase"] == "Succeeded", restore
    assert postgres.psql("SELECT count(*) FROM users", app_database).strip() == "200"
    assert postgres.psql("SELECT count(*) FROM bookings", app_database).strip() == "500"
    safety = harness.get_resource(kube_client, namespace, "DatabaseBackup", restore["safetyBackupName"])
    assert safety is not None and safety["status"]["phase"] == "Succeeded"
    if claim_dir is not None:
        assert restore["safetyBackupName"] in stored_manifests(claim_dir / "safety")

    # deletionPolicy: Delete removes the artifact from the volume, and only that one.
    harness.delete_resource(kube_client, namespace, "DatabaseBackup", "before")
    harness.eventually(lambda: harness.get_resource(kube_client, namespace, "DatabaseBackup", "before") is None,
                       timeout=180, message="the backup to be finalized")
    if claim_dir is not None:
        assert "before" not in stored_manifests(claim_dir)
        assert restore["safetyBackupName"] in stored_manifests(claim_dir / "safety")


def test_two_backup_jobs_write_to_the_same_claim_at_once(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, claim_dir: Path | None) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    for name in ("first", "second"):
        harness.create_resource(kube_client, namespace, "DatabaseBackup", name,
                                {"database": DATABASE, "storage": pvc_storage("shared")})
    statuses = {name: harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", name,
                                             {"Succeeded", "Failed"})["status"] for name in ("first", "second")}
    assert all(s["phase"] == "Succeeded" for s in statuses.values()), statuses
    assert statuses["first"]["artifact"]["uri"] != statuses["second"]["artifact"]["uri"]
    if claim_dir is not None:
        manifests = stored_manifests(claim_dir / "shared")
        assert {"first", "second"} <= set(manifests), manifests
    # Both Jobs mounted the one ReadWriteOnce claim on this single node: their pods overlapped or not,
    # each artifact is whole (verified by its own Job) and neither overwrote the other.
    assert all(s["verification"]["decoded"] is True for s in statuses.values())


def test_schedule_retention_prunes_backups_on_the_claim(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, claim_dir: Path | None) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely", {
        "schedule": "*/1 * * * *",
        "backupTemplate": {"spec": {"database": DATABASE, "storage": pvc_storage("scheduled"),
                                    "verify": {"decode": False}}},
        "retention": {"keepLast": 1},
    })
    seen: set[str] = set()

    def pruned_and_gone() -> set[str] | None:
        existing = {b["metadata"]["name"] for b in harness.list_resources(kube_client, namespace, "DatabaseBackup")}
        seen.update(existing)
        body = harness.get_resource(kube_client, namespace, "DatabaseBackupSchedule", "minutely") or {}
        if (body.get("status") or {}).get("prunedBackups", 0) < 1:
            return None
        pruned = seen - existing
        if claim_dir is not None and pruned & set(stored_manifests(claim_dir / "scheduled")):
            return None
        return pruned or None

    pruned = harness.eventually(pruned_and_gone, timeout=420,
                                message="a pruned scheduled backup whose artifact left the volume")
    assert all(name.startswith("minutely-") for name in pruned)
    if claim_dir is not None:
        kept = set(stored_manifests(claim_dir / "scheduled"))
        assert kept and not kept & pruned, (kept, pruned)


def test_a_missing_claim_shows_on_the_backup_and_it_runs_once_the_claim_exists(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    # Before: only the pod said "persistentvolumeclaim not found"; the backup showed Running with no reason.
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseBackup", "no-claim", {
        "database": DATABASE, "storage": {"pvc": {"claimName": "later"}}})

    def waiting_on_volume() -> dict[str, Any] | None:
        body = harness.get_resource(kube_client, namespace, "DatabaseBackup", "no-claim")
        ready = {c["type"]: c for c in ((body or {}).get("status") or {}).get("conditions") or []}.get("Ready")
        return ready if ready and ready["reason"] == "VolumeNotReady" else None

    ready = harness.eventually(waiting_on_volume, timeout=180, message="Ready=False VolumeNotReady on the backup")
    assert ready["status"] == "False" and "later" in ready["message"], ready
    harness.eventually(lambda: [e for e in harness.list_events(kube_client, namespace)
                                if e["involvedObject"]["name"] == "no-claim" and e["type"] == "Warning"
                                and e["reason"] == "VolumeNotReady" and "later" in e["message"]],
                       timeout=60, message="a Warning Event VolumeNotReady naming the claim")
    client.CoreV1Api(kube_client).create_namespaced_persistent_volume_claim(namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "later"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    status = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "no-claim", {"Succeeded", "Failed"},
                                    timeout=400)["status"]
    assert status["phase"] == "Succeeded", status
    assert operator.alive() and "Traceback" not in operator.logs()
