"""A command-mode DatabaseMigration verifies row counts and shows sizes before and after, end to end.

A real Django project's later release (the `cleanup` app: it indexes bookings by user and prunes every tenth
booking) runs in the command Job; its init container snapshots the counts and sizes, the verify Job compares.
What a user would lose without it: a data migration deleting more than they allowed passing unnoticed, or a
correct migration failing because Django's own tables grew."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
MANAGE = Path(__file__).parent / "django_app" / "manage.py"


def cleanup_spec(*args: str, tolerance: float, **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "preChecks": {"enabled": False},
            "source": {"command": {
                "image": "registry.example/mentorhub:1.5",
                "command": [sys.executable, str(MANAGE), "migrate", *args, "--noinput"],
                "env": [{"name": "DJANGO_SETTINGS_MODULE", "value": "mentorhub.settings"},
                        {"name": "MENTORHUB_EXTRA_APPS", "value": "cleanup"}]}},
            "verify": {"builtin": ["foreignKeys", "invalidIndexes", "rowCounts"],
                       "rowCounts": {"tolerancePercent": tolerance, "framework": "django"}},
            **extra}


def row_counts(status: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in status["verification"] if v["name"] == "rowCounts")


def test_rows_beyond_the_tolerance_roll_back_within_it_succeed_and_zero_rolls_back(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})

    # 10% of bookings deleted, 5% allowed: verification fails after the command, onFailure restores the backup.
    strict = cleanup_spec("cleanup", tolerance=5, onFailure="RestoreBackup",
                          backup={"enabled": True, "storage": harness.s3_storage(minio_server, bucket)})
    harness.create_resource(kube_client, namespace, MIGRATION, "prune-strict", strict)
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "prune-strict",
                                    {"Succeeded", "Failed", "RolledBack"}, timeout=500)["status"]
    assert status["phase"] == "RolledBack", status
    assert "VerificationFailed" in status["message"] and "public.bookings 500→450" in status["message"], status
    result = row_counts(status)
    assert result["passed"] is False and "tolerance 5%" in result["detail"]
    assert "django_" not in result["detail"] and "auth_permission" not in result["detail"]
    assert postgres.psql("SELECT count(*) FROM bookings", app_database) == "500"  # restored

    # 20% allowed: Succeeded, with the index the migration created in status.sizes (before: none).
    harness.create_resource(kube_client, namespace, MIGRATION, "prune", cleanup_spec("cleanup", tolerance=20))
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "prune", {"Succeeded", "Failed", "RolledBack"},
                                    timeout=400)["status"]
    assert status["phase"] == "Succeeded", status
    assert postgres.psql("SELECT count(*) FROM bookings", app_database) == "450"
    result = row_counts(status)
    assert result["passed"] is True and "tolerance 20%" in result["detail"] and "skipped" not in result["detail"]
    (index,) = [i for i in status["sizes"]["indexes"] if i["name"] == "public.bookings_user_idx"]
    assert index.get("bytesBefore") is None and index["bytesAfter"] > 0 and index["table"] == "public.bookings"
    bookings = next(t for t in status["sizes"]["tables"] if t["name"] == "public.bookings")
    assert 0 < bookings["bytesBefore"] < bookings["bytesAfter"]
    assert status["frameworkHistory"][0]["added"] == ["cleanup.0001_prune_bookings"]

    # The app rolled back to zero: only Django's bookkeeping changes, never counted, so 0% passes.
    harness.create_resource(kube_client, namespace, MIGRATION, "prune-undo",
                            cleanup_spec("cleanup", "zero", tolerance=0))
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "prune-undo",
                                    {"Succeeded", "Failed", "RolledBack"}, timeout=400)["status"]
    assert status["phase"] == "Succeeded", status
    assert row_counts(status)["passed"] is True
    assert status["frameworkHistory"][0]["removed"] == ["cleanup.0001_prune_bookings"]
    (index,) = [i for i in status["sizes"]["indexes"] if i["name"] == "public.bookings_user_idx"]
    assert index["bytesBefore"] > 0 and index.get("bytesAfter") is None
