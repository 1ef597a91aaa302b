"""DatabaseMigration decisions in command mode: checks, backup, command Job, verify-db Job, rollback, approval."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.controller import migration as migration_controller
from dbops.reconcile import command as command_reconcile
from dbops.reconcile import migration as m
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome, job_outcome

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NAMES = {"check": "m-check-1", "command": "m-command-1", "verify": "m-verify-1"}
URI = "postgresql://app:s3cret-pw@pg.prod.svc:5432/app"
# The flow without the framework's plan step (its own tests: test_reconcile_migration_command_plan.py).
BASE = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "source": {"command": {"image": "app:1.4", "command": ["python", "manage.py", "migrate", "--noinput"],
                               "plan": "Disabled"}}}
BACKUP = {"backup": {"enabled": True, "storage": {"s3": {"bucket": "bkt"}}}}


def spec(**extra: Any) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**BASE, **extra})


def finished_job(ok: bool, reason: str = "PodFailurePolicy") -> dict[str, Any]:
    condition = {"type": "Complete", "status": "True"} if ok else {"type": "Failed", "status": "True",
                                                                  "reason": reason, "message": "pod failed"}
    return {"status": {"conditions": [condition]}}


def pod(exit_code: int, message: str, finished: str = "2026-11-25T12:00:00Z") -> dict[str, Any]:
    return {"status": {"containerStatuses": [{"state": {"terminated": {
        "exitCode": exit_code, "message": message, "finishedAt": finished}}}]}}


def runner(result: dict[str, Any], ok: bool = True) -> JobOutcome:
    return job_outcome(finished_job(ok), [pod(0 if ok else 1, json.dumps(result))])


COMMAND_OK = command_reconcile.command_outcome(finished_job(True), [pod(0, "")])
CHECKS_OK = runner({"preChecks": [{"name": "connectivity", "result": "pass"}]})
VERIFIED = runner({"verification": [{"name": "foreignKeys", "passed": True}, {"name": "invalidIndexes",
                                                                               "passed": True}]})
VERIFY_FAILED = runner({"reason": "VerificationFailed", "message": "verification failed: orphans: 3",
                        "verification": [{"name": "orphans", "passed": False, "detail": "3"}]}, ok=False)


def failed_command(output: str = "Traceback …\ndjango.db.utils.ProgrammingError: relation \"x\" does not exist"
                   ) -> JobOutcome:
    return command_reconcile.command_outcome(finished_job(False), [pod(1, output)])


def observe(check: JobOutcome = MISSING, command: JobOutcome = MISSING, verify: JobOutcome = MISSING,
            backup: ChildState | None = None, restore: ChildState | None = None,
            revision: str = "0123456789abcdef") -> m.MigrationObserved:
    return m.MigrationObserved(revision, m.MigrationJobs(MISSING, check, command, NAMES, verify=verify),
                               backup or ChildState("pre"), restore or ChildState("rb"), None, "app")


def run(s: DatabaseMigrationSpec, status: DatabaseMigrationStatus, observed: m.MigrationObserved) -> Any:
    return m.reconcile_migration(s, status, observed, generation=1, now=NOW)


def test_checks_then_backup_then_command_then_verify_then_succeeded() -> None:
    s = spec(**BACKUP)
    decision = run(s, DatabaseMigrationStatus(), observe())
    assert [(j.role, j.name) for j in decision.jobs] == [("check", "m-check-1")]  # no plan Job in command mode
    assert decision.status.phase == "Checking"
    decision = run(s, decision.status, observe(check=CHECKS_OK))
    assert decision.jobs == [] and decision.children[0].kind == "DatabaseBackup"
    backup = ChildState("pre", "Succeeded")
    decision = run(s, decision.status, observe(check=CHECKS_OK, backup=backup))
    assert [(j.role, j.name) for j in decision.jobs] == [("command", "m-command-1")]
    assert decision.status.phase == "Migrating" and decision.status.pre_checks[0].name == "connectivity"
    running = JobOutcome("Running")
    decision = run(s, decision.status, observe(check=CHECKS_OK, backup=backup, command=running))
    assert decision.jobs == [] and decision.status.phase == "Migrating"
    decision = run(s, decision.status, observe(check=CHECKS_OK, backup=backup, command=COMMAND_OK))
    assert [(j.role, j.name) for j in decision.jobs] == [("verify", "m-verify-1")]
    assert decision.status.phase == "Verifying"
    decision = run(s, decision.status, observe(check=CHECKS_OK, backup=backup, command=COMMAND_OK, verify=VERIFIED))
    assert decision.status.phase == "Succeeded" and decision.jobs == []
    assert [v.name for v in decision.status.verification] == ["foreignKeys", "invalidIndexes"]
    assert "2 verifications passed" in decision.status.message
    assert any(e.reason == "MigrationSucceeded" for e in decision.events)


def test_without_pre_checks_the_command_starts_first() -> None:
    decision = run(spec(preChecks={"enabled": False}), DatabaseMigrationStatus(), observe())
    assert [j.role for j in decision.jobs] == ["command"]


def test_a_failing_command_fails_with_its_output_tail() -> None:
    s = spec(preChecks={"enabled": False})
    decision = run(s, DatabaseMigrationStatus(source_hash="0123456789abcdef", phase="Migrating"),
                   observe(command=failed_command()))
    status = decision.status
    assert status.phase == "Failed" and status.condition("Ready").reason == "MigrationFailed"  # type: ignore[union-attr]
    assert "exited with code 1" in status.message and 'relation "x" does not exist' in status.message
    assert decision.jobs == []


def test_a_failing_command_with_restore_backup_rolls_back() -> None:
    s = spec(**BACKUP, onFailure="RestoreBackup", preChecks={"enabled": False})
    backup = ChildState("pre", "Succeeded")
    decision = run(s, DatabaseMigrationStatus(source_hash="0123456789abcdef", phase="Migrating"),
                   observe(command=failed_command(), backup=backup))
    assert decision.status.phase == "RollingBack" and decision.children[0].kind == "DatabaseRestore"
    assert decision.children[0].spec["source"]["backupRef"]["name"] == "pre"
    decision = run(s, decision.status, observe(command=failed_command(), backup=backup,
                                               restore=ChildState("rb", "Succeeded")))
    assert decision.status.phase == "RolledBack"
    assert "MigrationFailed" in decision.status.message and "exited with code 1" in decision.status.message


def test_failed_verification_fails_or_rolls_back() -> None:
    s = spec(preChecks={"enabled": False})
    migrating = DatabaseMigrationStatus(source_hash="0123456789abcdef", phase="Verifying")
    decision = run(s, migrating, observe(command=COMMAND_OK, verify=VERIFY_FAILED))
    assert decision.status.phase == "Failed" and "orphans" in decision.status.message
    assert decision.status.condition("Ready").reason == "VerificationFailed"  # type: ignore[union-attr]
    assert decision.status.verification[0].passed is False
    rollback = spec(**BACKUP, onFailure="RestoreBackup", preChecks={"enabled": False})
    decision = run(rollback, migrating, observe(command=COMMAND_OK, verify=VERIFY_FAILED,
                                                backup=ChildState("pre", "Succeeded")))
    assert decision.status.phase == "RollingBack"


def test_dry_run_is_refused_with_invalid_spec() -> None:
    decision = run(spec(dryRun=True), DatabaseMigrationStatus(), observe())
    assert decision.jobs == [] and decision.status.phase == "Failed"
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.reason == "InvalidSpec" and "dryRun" in ready.message
    fixed = run(spec(), decision.status, observe(revision="fedcba9876543210"))  # a corrected spec re-runs
    assert [j.role for j in fixed.jobs] == ["check"]


def test_manual_approval_approves_the_spec_hash() -> None:
    s = spec(approval={"mode": "Manual"}, preChecks={"enabled": False})
    decision = run(s, DatabaseMigrationStatus(), observe())
    assert decision.jobs == [] and decision.status.phase == "AwaitingApproval"
    assert decision.status.plan is not None and decision.status.plan.hash == "0123456789abcdef"
    assert "0123456789abcdef" in decision.status.message
    approved = spec(approval={"mode": "Manual", "approvedPlanHash": "0123456789abcdef"}, preChecks={"enabled": False})
    decision = run(approved, decision.status, observe())
    assert [j.role for j in decision.jobs] == ["command"]
    stale = run(approved, DatabaseMigrationStatus(), observe(revision="aaaaaaaaaaaaaaaa"))
    assert stale.jobs == [] and stale.status.phase == "AwaitingApproval"  # a changed spec needs a new approval


def test_command_outcome_reads_exit_code_and_tail_and_redacts() -> None:
    output = "\n".join(f"line {n}" for n in range(100)) + f"\nconnection to {URI} failed\n"
    outcome = failed_command(output)
    assert outcome.state == "Failed" and outcome.reason == "MigrationFailed"
    assert "s3cret-pw" not in outcome.message and "postgresql://app:****@" in outcome.message
    assert "line 99" in outcome.message and "line 10 " not in outcome.message and len(outcome.message) <= 1024
    assert command_reconcile.command_outcome(None).state == "Missing"
    assert command_reconcile.command_outcome({"status": {}}).state == "Running"
    no_pod = command_reconcile.command_outcome(finished_job(False, "DeadlineExceeded"))
    assert no_pod.reason == "MigrationFailed" and "pod failed" in no_pod.message
    newest = command_reconcile.command_outcome(finished_job(False), [
        pod(2, "first attempt", "2026-11-25T12:00:00Z"), pod(3, "second attempt", "2026-11-25T12:05:00Z")])
    assert "code 3: second attempt" in newest.message
    long = command_reconcile.output_tail("x" * 5000, max_chars=100)
    assert len(long) == 100 and long.startswith("…")


def test_the_revision_covers_the_command_image_command_and_env() -> None:
    base = migration_controller.revision_of(spec(), {})
    assert base == migration_controller.revision_of(spec(), {})
    new_image = spec(source={"command": {**BASE["source"]["command"], "image": "app:1.5"}})  # type: ignore[dict-item]
    new_env = spec(source={"command": {**BASE["source"]["command"],  # type: ignore[dict-item]
                                       "env": [{"name": "DJANGO_DEBUG", "value": "0"}]}})
    approved = spec(approval={"mode": "Manual", "approvedPlanHash": base})
    assert migration_controller.revision_of(new_image, {}) != base
    assert migration_controller.revision_of(new_env, {}) != base
    assert migration_controller.revision_of(approved, {}) == base  # approving does not change what is approved
    assert migration_controller.source_files("ns", spec()) == {}


def test_command_env_secret_refs_are_checked_before_jobs_start() -> None:
    s = spec(source={"command": {**BASE["source"]["command"], "env": [  # type: ignore[dict-item]
        {"name": "SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "app", "key": "secret-key"}}},
        {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "app", "key": "x", "optional": True}}},
        {"name": "PLAIN", "value": "1"}]}})
    refs = migration_controller.command_secret_references(s)
    assert [(r.name, r.key) for r in refs] == [("app", "secret-key")]


def test_an_incomplete_value_from_reference_is_an_invalid_spec() -> None:
    # Refused by the model (and by admission, its CEL twin) before the controller could make a Job of it.
    with pytest.raises(ValidationError, match=r"source\.command\.env\.0\.valueFrom\.secretKeyRef\.(name|key)"):
        spec(source={"command": {**BASE["source"]["command"],  # type: ignore[dict-item]
                                 "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {}}}]}})
