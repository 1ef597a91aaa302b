"""DatabaseMigration.spec.rehearsal that stops the run before the database is touched: an exclusive lock on a large
table, longer than the window, a copy that does not fit the declared space, a role without CREATEDB."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tests.integration import operator_harness as harness
from tests.integration import rehearsal_support as support
from tests.integration.rehearsal_support import MIGRATION, MIGRATIONS, scratch_databases, spec
from tests.integration.test_operator_migration import schema_dump

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
# On PostgreSQL 15 and 18 (module scope: one server of each per file), the target enriched behind Secret "db".
postgres = support.postgres
target = support.target


def test_rehearsal_over_the_lock_limit_stops_before_the_database_is_touched(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    checksum = postgres.psql("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM bookings b", target)
    storage = harness.s3_storage(minio_server, bucket)
    # Automatic approval with a pre-migration backup: the copy is restored from that backup.
    harness.create_resource(kube_client, namespace, MIGRATION, "risky", spec(
        storage, backup={"enabled": True, "storage": storage},
        rehearsal={"enabled": True, "maxExclusiveLockTableSize": "512Ki"}))

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "risky", {"Succeeded", "Failed"}, timeout=400)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RehearsalLockedLargeTable" and "public.bookings" in failed["message"], failed
    assert "0002_bookings_user_bigint" in failed["message"] and "not touched" in failed["message"]
    assert status["rehearsal"]["outcome"] == "Blocked" and status["rehearsal"]["backup"] == status["backupName"]
    warnings = [e for e in harness.wait_for_event(kube_client, namespace, "risky", "RehearsalBlocked")
                if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["RehearsalBlocked"] and "public.bookings" in warnings[0]["message"]
    assert schema_dump(postgres, target) == before
    assert postgres.psql("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM bookings b", target) == checksum
    assert postgres.psql("SELECT to_regclass('public.dbops_migrations') IS NULL", target) == "t"
    assert scratch_databases(postgres) == []
    assert "apply" not in {job["metadata"]["labels"]["dbops.io/role"]
                           for job in harness.list_jobs(kube_client, namespace)}


def test_rehearsal_longer_than_the_window_stops_before_the_database_is_touched(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    storage = harness.s3_storage(minio_server, bucket)
    slow = [*MIGRATIONS[:1], {"version": "0002", "name": "slow_backfill", "up": "SELECT pg_sleep(17);"}]
    # A window of 15 s opening every minute: no rehearsal.maxDuration, so the window's duration is the limit.
    harness.create_resource(kube_client, namespace, MIGRATION, "slow", {
        **spec(storage, backup={"enabled": True, "storage": storage}, rehearsal={"enabled": True}),
        "source": {"inline": slow}, "window": {"schedule": "* * * * *", "duration": "15s"}})

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "slow", {"Succeeded", "Failed"}, timeout=500)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RehearsalExceededWindow", failed
    assert "longer than the 15s allowed" in failed["message"] and "not touched" in failed["message"], failed
    report = status["rehearsal"]
    assert report["outcome"] == "Blocked" and report["durationMs"] >= 17000, report
    assert [row["version"] for row in report["migrations"]] == ["0001", "0002"]
    warnings = [e for e in harness.wait_for_event(kube_client, namespace, "slow", "RehearsalBlocked")
                if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["RehearsalBlocked"]
    assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []
    assert postgres.psql("SELECT to_regclass('public.dbops_migrations') IS NULL", target) == "t"
    assert "apply" not in {job["metadata"]["labels"]["dbops.io/role"]
                           for job in harness.list_jobs(kube_client, namespace)}


def test_rehearsal_refuses_a_copy_that_does_not_fit_the_declared_space(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    storage = harness.s3_storage(minio_server, bucket)
    harness.create_resource(kube_client, namespace, MIGRATION, "cramped", spec(
        storage, backup={"enabled": True, "storage": storage},
        rehearsal={"enabled": True, "availableSpace": "1Mi"}))

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "cramped", {"Succeeded", "Failed"}, timeout=400)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RehearsalInsufficientSpace" and "not enough space" in failed["message"], failed
    report = status["rehearsal"]
    assert report["copyBytes"] > 1 << 20 and report["spaceCheck"].startswith("failed"), report
    assert report["migrations"] == [] and report["scratchDropped"] is True
    warnings = [e for e in harness.wait_for_event(kube_client, namespace, "cramped", "RehearsalFailed")
                if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["RehearsalFailed"], warnings
    assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []


def test_rehearsal_with_a_role_without_createdb_is_refused_by_name_and_the_target_is_untouched(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    # The application's own role: it can read everything (a backup or plan needs no more) but cannot create the
    # scratch database. The backup was taken by the platform with the superuser Secret ("db").
    role, password = f"app_{uuid.uuid4().hex[:8]}", "pw-app-without-createdb"
    postgres.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOCREATEDB; GRANT pg_read_all_data TO {role}")
    try:
        harness.create_secret(kube_client, namespace, "app", {"uri": postgres.uri(target, user=role,
                                                                                 password=password)})
        storage = harness.s3_storage(minio_server, bucket)
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "nightly",
                                {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "nightly", {"Succeeded"}, timeout=300)
        before = schema_dump(postgres, target)
        harness.create_resource(kube_client, namespace, MIGRATION, "unprivileged", {
            **spec(storage, rehearsal={"enabled": True, "backupRef": {"name": "nightly"}}),
            "database": {"uriSecretRef": {"name": "app", "key": "uri"}}})

        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "unprivileged", {"Succeeded", "Failed"},
                                      timeout=400)
        status = body["status"]
        assert status["phase"] == "Failed", status
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "RehearsalInsufficientPrivileges", failed
        assert f'role "{role}"' in failed["message"] and "CREATEDB" in failed["message"], failed
        assert "not touched" in failed["message"] and "Traceback" not in failed["message"]
        assert status["rehearsal"]["migrations"] == [] and status["rehearsal"]["backup"] == "nightly"
        warnings = [e for e in harness.wait_for_event(kube_client, namespace, "unprivileged", "RehearsalFailed")
                    if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["RehearsalFailed"], warnings
        assert "RehearsalInsufficientPrivileges" in warnings[0]["message"] and role in warnings[0]["message"]
        assert password not in str(status) + str(warnings) + str(harness.list_jobs(kube_client, namespace))
        assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []
        assert postgres.psql("SELECT to_regclass('public.dbops_migrations') IS NULL", target) == "t"
        assert "apply" not in {job["metadata"]["labels"]["dbops.io/role"]
                               for job in harness.list_jobs(kube_client, namespace)}
    finally:
        postgres.psql(f"DROP ROLE IF EXISTS {role}")
