"""R1 through the operator: a DatabaseBackup whose runner container is SIGKILLed mid-upload never shows
Succeeded without a committed, verified backup; the Job's retry makes the backup and nothing is half-written."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration import operator_harness as harness
from tests.integration import storage_sweep, upload_meter

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)
BACKUP = "DatabaseBackup"
RATE = 1_500_000


def _container_processes(pod: str) -> list[int]:
    """PIDs of every process of a pod's containers (the test bed runs them on this host, HOSTNAME=<pod>)."""
    wanted = f"HOSTNAME={pod}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found


def test_a_backup_whose_runner_is_sigkilled_mid_upload_never_shows_succeeded_without_a_manifest(
    operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
    app_database: str, minio_server: MinioServer, bucket: str
) -> None:
    postgres.psql("CREATE TABLE ledger AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || "
                  "md5((g * 13)::text) AS h FROM generate_series(1, 200000) g", app_database)
    link = upload_meter.MeteredLink(minio_server.endpoint, RATE)
    storage = harness.s3_storage(minio_server, bucket)
    storage["s3"]["endpoint"] = link.endpoint  # the runner uploads over a slow, metered link
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, BACKUP, "killed",
                            {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
    folder = f"ops/{namespace}/{app_database}/killed/"
    seen: list[tuple[str, bool]] = []  # (phase, manifest exists) sampled all along
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                body = harness.get_resource(kube_client, namespace, BACKUP, "killed") or {}
                phase = str((body.get("status") or {}).get("phase", ""))
                seen.append((phase, f"{folder}manifest.json" in harness.s3_keys(minio_server, bucket, folder)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        harness.eventually(lambda: link.sent > 3_000_000, timeout=300, message="the runner mid-upload")
        pods = [p["metadata"]["name"] for p in harness.list_pods(kube_client, namespace)
                if p["metadata"].get("labels", {}).get("dbops.io/role") == "backup"
                and p.get("status", {}).get("phase") == "Running"]
        assert len(pods) == 1, pods
        pids = _container_processes(pods[0])
        assert pids, f"no process of pod {pods[0]} found"
        for pid in pids:  # the container dies at once, as on OOM or node loss: no cleanup
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = len(seen)
        keys = harness.s3_keys(minio_server, bucket, folder)
        assert [k for k in keys if not k.rsplit("/", 1)[-1].startswith(".")] == [], keys  # nothing at a final key
        body = harness.wait_for_phase(kube_client, namespace, BACKUP, "killed", {"Succeeded", "Failed"}, timeout=400)
    finally:
        stop.set()
        sampler.join()
        link.close()
    assert all(phase != "Succeeded" for phase, _ in seen[:killed_at]), seen[:killed_at]
    assert all(manifest for phase, manifest in seen if phase == "Succeeded"), "Succeeded shown without a manifest"
    sweep = storage_sweep.sweep_s3(minio_server.client(), bucket)
    storage_sweep.assert_no_orphan_manifests(sweep)
    status = body["status"]
    if status["phase"] == "Succeeded":  # the Job's retry made the backup: it is whole and verified
        assert status["verification"]["decoded"] is True
        assert sweep.in_folder(folder.rstrip("/")).orphan_objects == [], sweep
    else:
        assert f"{folder}manifest.json" not in harness.s3_keys(minio_server, bucket, folder)
    print(f"after the kill: {status['phase']}; {sweep.summary()}")
