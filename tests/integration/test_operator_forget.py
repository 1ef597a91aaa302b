"""The operator forgets deleted resources: its per-resource lock table follows the live resources, not every
resource it has ever seen (issue 10: ``controller/locks.forget`` was never called)."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.ports import free_port

pytestmark = pytest.mark.timeout(600)
COUNT = 12


def resource_locks(port: int) -> float | None:
    """``dbops_operator_resource_locks`` from /metrics, None while the endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    match = re.search(r"^dbops_operator_resource_locks ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match[1]) if match else None


def test_deleted_resources_leave_no_lock_behind(installed_crds: ControlPlane, kube_client: Any,
                                                namespace: str) -> None:
    port = free_port()
    # Backups whose Secret does not exist: each is reconciled (and locked) but makes no Job, so deletion is quick.
    spec = {"database": {"uriSecretRef": {"name": "no-such-secret", "key": "uri"}},
            "storage": {"pvc": {"claimName": "backups"}}}
    with harness.running_operator(installed_crds, namespace, "--metrics-port", str(port)):
        harness.eventually(lambda: resource_locks(port) is not None, message="/metrics to answer")
        baseline = resource_locks(port) or 0.0
        names = [f"forgotten-{i}" for i in range(COUNT)]
        for name in names:
            harness.create_resource(kube_client, namespace, "DatabaseBackup", name, spec)
        harness.eventually(lambda: (resource_locks(port) or 0) >= baseline + COUNT, timeout=300,
                           message=f"{COUNT} resources reconciled")
        for name in names:
            harness.delete_resource(kube_client, namespace, "DatabaseBackup", name)
        harness.eventually(lambda: not harness.list_resources(kube_client, namespace, "DatabaseBackup"),
                           timeout=300, message="the backups deleted")
        harness.eventually(lambda: resource_locks(port) == baseline, timeout=120,
                           message="the lock table back to where it started")
