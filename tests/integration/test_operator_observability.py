"""Observability: /metrics (backup and controller-runtime style metrics) and /healthz of a running operator."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from tests import monitoring
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
        # uriSecretRef: the spec does not name the database, the runner's result does (was labelled "default").
        spec = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                "storage": harness.s3_storage(minio_server, bucket)}
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "observed", spec)
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "observed", {"Succeeded"})

        def scraped() -> str | None:
            text = fetch(f"http://127.0.0.1:{metrics_port}/metrics") or ""
            return text if f'dbops_backup_last_success_timestamp_seconds{{database="{app_database}",namespace="{namespace}",schedule=""}}' in text else None

        text = harness.eventually(scraped, message="the backup metrics")
    assert 'controller_runtime_reconcile_total{controller="DatabaseBackup",result="success"}' in text
    assert "controller_runtime_reconcile_time_seconds_bucket" in text
    labels = f'{{database="{app_database}",namespace="{namespace}",schedule=""}}'
    assert f"dbops_backup_size_bytes{labels}" in text and f"dbops_backup_last_duration_seconds{labels}" in text
    assert 'database="default"' not in text and 'database="unknown"' not in text
    assert f'dbops_outcomes_total{{kind="DatabaseBackup",namespace="{namespace}",result="Succeeded"}} 1.0' in text
    assert (f'dbops_resource_phase{{kind="DatabaseBackup",name="observed",namespace="{namespace}",'
            'phase="Succeeded"} 1.0') in text
    families = monitoring.exported_families(text)
    for name in sorted(monitoring.dashboard_metrics() | monitoring.rule_metrics()):
        assert name in families, f"the dashboard or the alert rules query {name}, which /metrics does not export"
    assert 'dbops_resources{kind="DatabaseBackup",phase="Succeeded"} 1.0' in text
    assert 'dbops_jobs_created_total{kind="DatabaseBackup",role="backup"} 1.0' in text
    assert postgres.password not in text
