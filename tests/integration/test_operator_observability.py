"""Observability: /metrics (backup and controller-runtime style metrics) and /healthz of a running operator."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.ports import free_port
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def test_metrics_and_health_endpoints_report_backups(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    metrics_port, health_port = free_port(), free_port()
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    with harness.running_operator(installed_crds, namespace, "--metrics-port", str(metrics_port),
                                  "--health-port", str(health_port)):
        harness.eventually(lambda: fetch(f"http://127.0.0.1:{health_port}/healthz") is not None,
                           message="/healthz to answer")
        spec = {"database": {"host": postgres.host, "port": postgres.port, "name": app_database,
                             "user": postgres.user, "passwordSecretRef": {"name": "db", "key": "password"}},
                "storage": harness.s3_storage(minio_server, bucket)}
        harness.create_secret(kube_client, namespace, "dbpw", {"password": postgres.password})
        spec["database"]["passwordSecretRef"]["name"] = "dbpw"
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "observed", spec)
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "observed", {"Succeeded"})

        def scraped() -> str | None:
            text = fetch(f"http://127.0.0.1:{metrics_port}/metrics") or ""
            return text if f'dbops_backup_last_success_timestamp_seconds{{database="{app_database}"' in text else None

        text = harness.eventually(scraped, message="the backup metrics")
    assert 'controller_runtime_reconcile_total{controller="DatabaseBackup",result="success"}' in text
    assert "controller_runtime_reconcile_time_seconds_bucket" in text
    assert f'dbops_backup_size_bytes{{database="{app_database}",namespace="{namespace}"}}' in text
    assert 'dbops_resources{kind="DatabaseBackup",phase="Succeeded"} 1.0' in text
    assert 'dbops_jobs_created_total{kind="DatabaseBackup",role="backup"} 1.0' in text
    assert postgres.password not in text
