"""R21: etcd and the API server SIGKILLed and restarted mid-reconcile; the operator and its Jobs recover.

The normal suite runs it once: the restart right after the backup is created, while the operator has just
started (a Kopf that read API discovery from the restarting server watched nothing: the operator must re-read
it). ``DBOPS_FAULT_REPEAT=N`` runs it N times, cycling through three points (bench/faults_bench.py does), and the
summary line gives runs, correct outcomes and the time from the API server being back to the terminal phase.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

REPEAT = max(1, int(os.environ.get("DBOPS_FAULT_REPEAT") or "1"))
pytestmark = pytest.mark.timeout(300 + 330 * REPEAT)
BACKUP = "DatabaseBackup"


def test_api_server_and_etcd_restarted_mid_reconcile(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str,
        postgres: PostgresServer, app_database: str, minio_server: MinioServer, bucket: str) -> None:
    if installed_crds.external or not installed_crds.commands:
        pytest.skip("needs the test bed's own control plane to restart")
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    outcomes: list[tuple[bool, float, str]] = []
    for run in range(REPEAT):
        name = f"api-{run:02d}"
        harness.create_resource(kube_client, namespace, BACKUP, name, {
            "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "storage": harness.s3_storage(minio_server, bucket)})
        point = ("just created", "Job running", "verifying")[run % 3]
        if point == "Job running":
            harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Running", "Verifying", "Succeeded"})
        elif point == "verifying":
            harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Verifying", "Succeeded"}, timeout=300)
        installed_crds.restart("etcd", "kube-apiserver", down_seconds=1.0)
        back = time.monotonic()
        body = harness.wait_for_phase(kube_client, namespace, BACKUP, name, {"Succeeded", "Failed"}, timeout=300)
        recover = time.monotonic() - back
        roles = Counter(job["metadata"]["labels"]["dbops.io/role"] for job in harness.list_jobs(kube_client, namespace)
                        if job["metadata"]["labels"].get("dbops.io/name") == name)
        keys = [key for key in harness.s3_keys(minio_server, bucket) if f"/{name}/" in key]
        problems = []
        if body["status"]["phase"] != "Succeeded":
            problems.append(f"phase {body['status']['phase']}: {body['status'].get('message')}")
        if any(count != 1 for count in roles.values()):
            problems.append(f"duplicate Jobs {dict(roles)}")
        if sorted(key.rsplit("/", 1)[1] for key in keys) != ["dump.zst", "manifest.json"]:
            problems.append(f"stored objects {keys}")
        outcomes.append((not problems, recover, f"{point}: {'; '.join(problems)}"))
    correct = sum(1 for ok, _, _ in outcomes if ok)
    times = [seconds for _, seconds, _ in outcomes]
    print(f"FAULT api-server+etcd runs={len(outcomes)} correct={correct} "
          f"recover_median={statistics.median(times):.1f}s recover_max={max(times):.1f}s")
    assert correct == len(outcomes), [detail for ok, _, detail in outcomes if not ok]
    assert operator.alive()
