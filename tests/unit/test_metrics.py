"""Metrics: outcomes counted once per transition, the real database name, newest backup wins, series forgotten."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from dbops.api.backup import DatabaseBackupStatus
from dbops.api.migration import DatabaseMigrationStatus
from dbops.api.schedule import DatabaseBackupScheduleStatus
from dbops.controller import metrics

T1 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def body(kind: str, namespace: str, name: str, status: dict[str, Any] | None = None,
         labels: dict[str, str] | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"namespace": namespace, "name": name, "labels": labels or {}},
            "spec": spec or {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}}, "status": status or {}}


def value(metric: str, /, **labels: str) -> float | None:
    found: float | None = REGISTRY.get_sample_value(metric, labels)
    return found


def succeeded_backup(database: str, completed: datetime, size: int) -> DatabaseBackupStatus:
    return DatabaseBackupStatus.model_validate({
        "phase": "Succeeded", "startedAt": "2026-11-29T01:59:00Z", "completedAt": completed.isoformat(),
        "durationSeconds": 60.0, "source": {"database": database},
        "artifact": {"uri": "s3://b/x", "sizeBytes": size, "sha256": "0" * 64}})


def test_a_backup_through_uri_secret_ref_is_labelled_with_the_database_the_runner_dumped() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    labels = {"dbops.io/schedule": "nightly"}
    metrics.record_backup(body("DatabaseBackup", namespace, "b1", labels=labels), succeeded_backup("mentorhub", T1, 10))
    assert value("dbops_backup_size_bytes", namespace=namespace, schedule="nightly", database="mentorhub") == 10
    assert value("dbops_backup_last_success_timestamp_seconds", namespace=namespace, schedule="nightly",
                 database="mentorhub") == T1.timestamp()
    assert value("dbops_backup_size_bytes", namespace=namespace, schedule="nightly", database="default") is None


def test_an_older_backup_read_after_a_newer_one_does_not_move_the_gauges_back() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    metrics.record_backup(body("DatabaseBackup", namespace, "new"), succeeded_backup("app", T2, 20))
    metrics.record_backup(body("DatabaseBackup", namespace, "old"), succeeded_backup("app", T1, 10))
    assert value("dbops_backup_last_success_timestamp_seconds", namespace=namespace, schedule="",
                 database="app") == T2.timestamp()
    assert value("dbops_backup_size_bytes", namespace=namespace, schedule="", database="app") == 20


def test_outcomes_are_counted_once_when_a_resource_becomes_terminal() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    failed = DatabaseMigrationStatus()
    failed.mark_failed("VerificationFailed", "orphaned bookings: 3 rows", generation=1, now=T1)
    before = body("DatabaseMigration", namespace, "release-42", {"phase": "Verifying"})
    assert value("dbops_outcomes_total", kind="DatabaseMigration", namespace=namespace, result="Failed") is None
    metrics.record_transition(before, DatabaseMigrationStatus(phase="Verifying"))
    assert value("dbops_outcomes_total", kind="DatabaseMigration", namespace=namespace, result="Failed") == 0
    metrics.record_transition(before, failed)
    metrics.record_transition(body("DatabaseMigration", namespace, "release-42", failed.to_wire()), failed)
    assert value("dbops_outcomes_total", kind="DatabaseMigration", namespace=namespace, result="Failed") == 1
    assert value("dbops_verification_failures_total", kind="DatabaseMigration", namespace=namespace) == 1
    assert value("dbops_resource_failed", kind="DatabaseMigration", namespace=namespace, name="release-42",
                 reason="VerificationFailed", schedule="") == 1
    metrics.forget("DatabaseMigration", namespace, "release-42")
    assert value("dbops_resource_failed", kind="DatabaseMigration", namespace=namespace, name="release-42",
                 reason="VerificationFailed", schedule="") is None


def test_schedule_gauges_come_from_its_status_and_go_with_it() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    status = DatabaseBackupScheduleStatus.model_validate({
        "phase": "Active", "lastBackup": {"name": "nightly-2", "phase": "Failed"},
        "lastSuccessfulBackup": {"name": "nightly-1", "phase": "Succeeded", "completedAt": T1.isoformat()}})
    metrics.record_schedule(namespace, "nightly", status)
    assert value("dbops_schedule_last_backup_failed", namespace=namespace, schedule="nightly") == 1
    assert value("dbops_schedule_last_success_timestamp_seconds", namespace=namespace,
                 schedule="nightly") == T1.timestamp()
    assert value("dbops_resource_phase", kind="DatabaseBackupSchedule", namespace=namespace, name="nightly",
                 phase="Active") == 1
    metrics.forget("DatabaseBackupSchedule", namespace, "nightly")
    assert value("dbops_schedule_last_backup_failed", namespace=namespace, schedule="nightly") is None
    assert value("dbops_resource_phase", kind="DatabaseBackupSchedule", namespace=namespace, name="nightly",
                 phase="Active") is None


def test_a_schedule_whose_run_cannot_start_counts_as_failed_until_a_later_run_succeeded() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    failure = {"jobName": "nightly-cron-29412345", "reason": "ImagePullFailed", "message": "cannot start",
               "createdAt": T1.isoformat()}
    status = DatabaseBackupScheduleStatus.model_validate({
        "phase": "Active", "lastBackup": {"name": "nightly-1", "phase": "Succeeded"}, "lastStartFailure": failure})
    metrics.record_schedule(namespace, "nightly", status)
    assert value("dbops_schedule_last_backup_failed", namespace=namespace, schedule="nightly") == 1
    status = DatabaseBackupScheduleStatus.model_validate({
        "phase": "Active", "lastBackup": {"name": "nightly-2", "phase": "Running"},
        "lastStartFailure": {**failure, "recoveredAt": T1.isoformat()}})
    metrics.record_schedule(namespace, "nightly", status)
    assert value("dbops_schedule_last_backup_failed", namespace=namespace, schedule="nightly") == 0
    metrics.forget("DatabaseBackupSchedule", namespace, "nightly")


def test_every_metric_has_help_text() -> None:
    for family in REGISTRY.collect():
        if family.name.startswith(("dbops_", "controller_runtime_")):
            assert family.documentation, family.name
