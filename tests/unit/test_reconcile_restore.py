"""DatabaseRestore decisions: wait for the backup, safety backup first, restore Job, results into status."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus
from dbops.reconcile.children import ChildState, child_state
from dbops.reconcile.jobs import MISSING, JobOutcome, job_outcome
from dbops.reconcile.restore import RestoreObserved, RestoreSource, reconcile_restore

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
STORAGE = {"s3": {"bucket": "bkt"}}
SPEC = DatabaseRestoreSpec.model_validate({
    "source": {"backupRef": {"name": "nightly"}},
    "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}},
    "clean": True, "confirmOverwrite": "app",
    "safetyBackup": {"enabled": True, "storage": STORAGE},
})
READY = RestoreSource("Ready", artifact_dir="s3://bkt/ns/app/nightly", storage=STORAGE, sha256="ab" * 32,
                      backup_name="nightly")


def observe(source: RestoreSource = READY, safety: ChildState | None = None,
            restore: JobOutcome = MISSING) -> RestoreObserved:
    return RestoreObserved(source, safety or ChildState("undo-safety"), restore, "undo-restore-1")


def finished(result: dict[str, object], ok: bool = True) -> JobOutcome:
    job = {"status": {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}]}}
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0 if ok else 2,
                                                                        "message": json.dumps(result)}}}]}}
    return job_outcome(job, [pod])


def test_waits_while_the_backup_is_not_finished() -> None:
    decision = reconcile_restore(SPEC, DatabaseRestoreStatus(), observe(RestoreSource("Waiting", message="wait")),
                                 generation=1, now=NOW)
    assert decision.jobs == [] and decision.children == []
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.reason == "WaitingForBackup"


def test_a_failed_backup_fails_the_restore() -> None:
    decision = reconcile_restore(SPEC, DatabaseRestoreStatus(), observe(RestoreSource("Failed", message="bad")),
                                 generation=1, now=NOW)
    assert decision.status.phase == "Failed"


def test_safety_backup_comes_before_the_restore_job() -> None:
    decision = reconcile_restore(SPEC, DatabaseRestoreStatus(), observe(), generation=1, now=NOW)
    assert decision.status.phase == "BackingUp" and decision.jobs == []
    child = decision.children[0]
    assert child.kind == "DatabaseBackup" and not child.owned
    assert child.spec["storage"] == {"s3": {"bucket": "bkt", "prefix": "", "forcePathStyle": False}}
    decision = reconcile_restore(SPEC, decision.status, observe(safety=ChildState("undo-safety", "Running")),
                                 generation=1, now=NOW)
    assert decision.jobs == [] and decision.status.phase == "BackingUp"
    decision = reconcile_restore(SPEC, decision.status, observe(safety=ChildState("undo-safety", "Succeeded")),
                                 generation=1, now=NOW)
    assert [j.role for j in decision.jobs] == ["restore"]
    assert decision.jobs[0].params.artifact_dir == "s3://bkt/ns/app/nightly"
    assert decision.status.phase == "Restoring"


def test_failed_safety_backup_stops_before_touching_the_target() -> None:
    decision = reconcile_restore(SPEC, DatabaseRestoreStatus(phase="BackingUp"),
                                 observe(safety=ChildState("undo-safety", "Failed", "no space")), generation=1, now=NOW)
    assert decision.status.phase == "Failed" and decision.jobs == []


def test_restore_result_fills_the_status() -> None:
    result = {"ok": True, "restoredFrom": {"uri": "s3://bkt/ns/app/nightly/dump.zst"}, "tablesRestored": 2,
              "verification": {"rowCounts": {"name": "rowCounts", "passed": True, "detail": "2 tables"}}}
    decision = reconcile_restore(SPEC, DatabaseRestoreStatus(phase="Restoring"),
                                 observe(safety=ChildState("undo-safety", "Succeeded"), restore=finished(result)),
                                 generation=1, now=NOW)
    status = decision.status
    assert status.phase == "Succeeded" and status.tables_restored == 2
    assert status.restored_from is not None and status.restored_from.backup_name == "nightly"
    assert status.verification is not None and status.verification.passed


def test_child_state_reads_phase_and_reason() -> None:
    body = {"status": {"phase": "Failed", "message": "m", "conditions": [{"type": "Ready", "reason": "AuthenticationFailed"}]}}
    state = child_state("c", body)
    assert state.finished and state.reason == "AuthenticationFailed"
    assert not child_state("c", None).exists


def test_table_restore_lists_partitions_in_status_and_safety_backup_covers_the_whole_target() -> None:
    spec = DatabaseRestoreSpec.model_validate({
        "source": {"backupRef": {"name": "nightly"}},
        "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}},
        "mode": "Tables", "tables": ["payment"], "strategy": "Merge",
        "safetyBackup": {"enabled": True, "storage": STORAGE},
    })
    decision = reconcile_restore(spec, DatabaseRestoreStatus(), observe(), generation=1, now=NOW)
    # No scope: every table the restore touches (and every table referencing them) is in the safety backup.
    assert "scope" not in decision.children[0].spec
    result = {"ok": True, "tablesRestored": 2, "tables": ["public.payment_2026_01", "public.payment_2026_02"]}
    decision = reconcile_restore(spec, DatabaseRestoreStatus(phase="Restoring"),
                                 observe(safety=ChildState("undo-safety", "Succeeded"), restore=finished(result)),
                                 generation=1, now=NOW)
    assert decision.status.restored_tables == ["public.payment_2026_01", "public.payment_2026_02"]
