"""DatabaseRestore end to end: from a DatabaseBackup, with a safety backup of the target."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)


def test_restore_from_backup_ref_brings_the_data_back_after_a_safety_backup(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    storage = harness.s3_storage(minio_server, bucket)
    harness.create_resource(kube_client, namespace, "DatabaseBackup", "before", {
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
    harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "before", {"Succeeded"})
    postgres.psql("DELETE FROM bookings WHERE id > 100; DROP TABLE users CASCADE;", app_database)

    harness.create_resource(kube_client, namespace, "DatabaseRestore", "undo", {
        "source": {"backupRef": {"name": "before"}},
        "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}},
        "clean": True, "confirmOverwrite": app_database,
        "safetyBackup": {"enabled": True, "storage": storage},
    })
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "undo", {"Succeeded", "Failed"},
                                  timeout=400)
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["restoredFrom"]["backupName"] == "before"
    assert status["tablesRestored"] >= 2
    assert postgres.psql("SELECT count(*) FROM users", app_database).strip() == "200"
    assert postgres.psql("SELECT count(*) FROM bookings", app_database).strip() == "500"
    safety = harness.get_resource(kube_client, namespace, "DatabaseBackup", status["safetyBackupName"])
    assert safety is not None and safety["status"]["phase"] == "Succeeded"
    assert safety["metadata"]["labels"]["dbops.io/parent-kind"] == "DatabaseRestore"
    roles = sorted(job["metadata"]["labels"]["dbops.io/role"] for job in harness.list_jobs(kube_client, namespace))
    assert roles == ["backup", "backup", "restore", "verify", "verify"]


def test_restore_of_a_missing_backup_waits_with_a_condition(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, "DatabaseRestore", "orphan", {
        "source": {"backupRef": {"name": "does-not-exist"}},
        "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}},
    })

    def reported() -> bool:
        body = harness.get_resource(kube_client, namespace, "DatabaseRestore", "orphan") or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c["reason"] == "MissingReference" and "does-not-exist" in c["message"] for c in conditions)

    harness.eventually(reported, message="a MissingReference condition")
    assert harness.list_jobs(kube_client, namespace) == []
    assert operator.alive()


def test_failed_sql_checks_fail_backup_verification_and_the_restore_naming_them(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    database = {"uriSecretRef": {"name": "db", "key": "uri"}}
    storage = harness.s3_storage(minio_server, bucket)
    users = {"name": "user-count", "sql": "SELECT count(*) FROM users", "expect": {"equals": "200"}}
    orphans = {"name": "orphan-bookings", "sql": "SELECT b.id FROM bookings b LEFT JOIN users u ON u.id = b.user_id "
                                                 "WHERE u.id IS NULL", "expect": {"rows": 0}}
    too_many = {"name": "too-many-users", "sql": "SELECT count(*) FROM users", "expect": {"max": 100}}
    for name, checks in (("good", [users, orphans]), ("checked", [users, too_many])):
        harness.create_resource(kube_client, namespace, "DatabaseBackup", name, {
            "database": database, "storage": storage, "verify": {"restoreTest": True, "checks": checks}})
    good = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "good", {"Succeeded", "Failed"},
                                  timeout=400)["status"]
    assert good["phase"] == "Succeeded", good
    assert good["verification"]["restoreTest"]["passed"] is True
    status = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "checked", {"Succeeded", "Failed"},
                                    timeout=400)["status"]
    assert status["phase"] == "Failed", status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "VerificationFailed" and "too-many-users" in ready["message"], ready
    assert status["verification"]["restoreTest"]["passed"] is False
    assert [m for m in status["verification"]["restoreTest"]["mismatches"] if m.startswith("check ")] == [
        next(m for m in status["verification"]["restoreTest"]["mismatches"] if "too-many-users" in m)]

    postgres.psql("CREATE TABLE leftover (id int)", app_database)
    harness.create_resource(kube_client, namespace, "DatabaseRestore", "checked-restore", {
        "source": {"backupRef": {"name": "good"}}, "target": {"database": database},
        "recreate": True, "confirmOverwrite": app_database, "verify": {"checks": [users, orphans, too_many]},
    })
    status = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "checked-restore",
                                    {"Succeeded", "Failed"}, timeout=400)["status"]
    assert status["phase"] == "Failed", status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "VerificationFailed" and "too-many-users" in ready["message"], ready
    assert "orphan-bookings" not in ready["message"]
    assert status["verification"]["passed"] is False
    assert any("too-many-users" in m for m in status["verification"]["mismatches"])
    assert postgres.psql("SELECT count(*) FROM users", app_database).strip() == "200"
    assert postgres.psql("SELECT to_regclass('leftover') IS NULL", app_database) == "t"
