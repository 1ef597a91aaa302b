"""DatabaseMigration decisions: window, plan, approval, checks, pre-backup, apply, rollback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus, MaintenanceWindow
from dbops.reconcile import migration as m
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome, job_outcome
from dbops.reconcile.window import window_state

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
NAMES = {"plan": "m-plan-1", "check": "m-check-1", "apply": "m-apply-1"}
BASE = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "source": {"inline": [{"version": "1", "name": "a", "up": "select 1"}]}}


def spec(**extra: Any) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**BASE, **extra})


def done(result: dict[str, Any], ok: bool = True) -> JobOutcome:
    job = {"status": {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}]}}
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0 if ok else 1,
                                                                        "message": json.dumps(result)}}}]}}
    return job_outcome(job, [pod])


PLAN = done({"plan": {"hash": "abcdef0123456789", "pending": ["1"], "lint": [{"rule": "x"}], "destructive": False},
             "currentVersion": ""})


def observe(plan: JobOutcome = MISSING, check: JobOutcome = MISSING, apply: JobOutcome = MISSING,
            backup: ChildState | None = None, restore: ChildState | None = None, window: Any = None,
            revision: str = "rev1") -> m.MigrationObserved:
    return m.MigrationObserved(revision, m.MigrationJobs(plan, check, apply, NAMES), backup or ChildState("pre"),
                               restore or ChildState("rb"), window, "app")


def run(s: DatabaseMigrationSpec, status: DatabaseMigrationStatus, observed: m.MigrationObserved) -> Any:
    return m.reconcile_migration(s, status, observed, generation=1, now=NOW)


def test_a_new_migration_plans_first() -> None:
    decision = run(spec(), DatabaseMigrationStatus(), observe())
    assert [j.role for j in decision.jobs] == ["plan"]
    assert decision.status.phase == "Planning" and decision.status.source_hash == "rev1"


def test_outside_the_window_it_waits_with_the_next_start() -> None:
    window = window_state(MaintenanceWindow(schedule="0 2 * * SUN", duration="2h"), NOW)
    assert not window.open
    decision = run(spec(window={"schedule": "0 2 * * SUN", "duration": "2h"}), DatabaseMigrationStatus(),
                   observe(window=window))
    assert decision.jobs == [] and decision.status.phase == "Waiting"
    assert decision.status.next_window is not None and decision.status.next_window.startswith("2026-11-29T02:00")
    assert decision.requeue_after is not None and decision.requeue_after <= 300


def test_window_open_inside_its_duration() -> None:
    window = MaintenanceWindow(schedule="0 11 * * *", duration="2h", time_zone="UTC")
    assert window_state(window, NOW).open
    assert not window_state(MaintenanceWindow(schedule="0 11 * * *", duration="30m"), NOW).open


def test_manual_approval_waits_until_the_hash_matches() -> None:
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Planning")
    decision = run(spec(approval={"mode": "Manual"}), status, observe(plan=PLAN))
    assert decision.status.phase == "AwaitingApproval" and "abcdef0123456789" in decision.status.message
    approved = spec(approval={"mode": "Manual", "approvedPlanHash": "abcdef0123456789"}, preChecks={"enabled": False})
    decision = run(approved, decision.status, observe(plan=PLAN))
    assert [j.role for j in decision.jobs] == ["apply"]
    assert decision.jobs[0].params.expect_plan_hash == "abcdef0123456789"


def test_pre_checks_then_pre_backup_then_apply() -> None:
    s = spec(backup={"enabled": True, "storage": {"s3": {"bucket": "bkt"}}})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Planning")
    decision = run(s, status, observe(plan=PLAN))
    assert [j.role for j in decision.jobs] == ["check"]
    checks = done({"preChecks": [{"name": "connections", "result": "pass", "detail": "3"}]})
    decision = run(s, decision.status, observe(plan=PLAN, check=checks))
    assert decision.children[0].kind == "DatabaseBackup" and decision.status.phase == "BackingUp"
    decision = run(s, decision.status, observe(plan=PLAN, check=checks, backup=ChildState("pre", "Succeeded")))
    assert [j.role for j in decision.jobs] == ["apply"] and decision.status.pre_checks[0].name == "connections"


def test_failed_apply_with_restore_backup_rolls_back() -> None:
    s = spec(backup={"enabled": True, "storage": {"s3": {"bucket": "bkt"}}}, onFailure="RestoreBackup",
             preChecks={"enabled": False})
    failed = done({"reason": "MigrationFailed", "message": "relation missing", "currentVersion": "2"}, ok=False)
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Migrating")
    backup = ChildState("pre", "Succeeded")
    decision = run(s, status, observe(plan=PLAN, apply=failed, backup=backup))
    assert decision.status.phase == "RollingBack"
    restore = decision.children[0]
    assert restore.kind == "DatabaseRestore" and restore.spec["source"]["backupRef"]["name"] == "pre"
    assert restore.spec["confirmOverwrite"] == "app"
    decision = run(s, decision.status, observe(plan=PLAN, apply=failed, backup=backup,
                                               restore=ChildState("rb", "Succeeded")))
    assert decision.status.phase == "RolledBack" and decision.status.is_terminal


def test_failed_apply_without_rollback_fails_and_stays_failed() -> None:
    failed = done({"reason": "LockHeld", "message": "lock"}, ok=False)
    decision = run(spec(preChecks={"enabled": False}), DatabaseMigrationStatus(source_hash="rev1", phase="Migrating"),
                   observe(plan=PLAN, apply=failed))
    assert decision.status.phase == "Failed"
    again = run(spec(preChecks={"enabled": False}), decision.status, observe(plan=PLAN, apply=failed))
    assert again.status.phase == "Failed" and again.jobs == []


def test_a_new_revision_starts_a_new_run_after_a_terminal_one() -> None:
    finished = DatabaseMigrationStatus(source_hash="rev1", current_version="1")
    finished.mark_succeeded("ok", generation=1, now=NOW)
    decision = run(spec(), finished, observe(revision="rev2"))
    assert decision.status.phase == "Planning" and decision.status.source_hash == "rev2"
    assert decision.status.current_version == "1"


def test_nothing_pending_succeeds_without_applying() -> None:
    empty = done({"plan": {"hash": "00aa00aa00aa", "pending": []}, "currentVersion": "7"})
    decision = run(spec(), DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), observe(plan=empty))
    assert decision.status.phase == "Succeeded" and decision.jobs == []


def test_a_dry_run_says_what_would_happen_and_keeps_the_version() -> None:
    """Regression: a dry run was reported as 'applied 1 migrations; now at version ' with versions as applied."""
    s = spec(dryRun=True, preChecks={"enabled": False})
    plan = done({"plan": {"hash": "abcdef0123456789", "pending": ["2", "3"], "lint": [], "destructive": False,
                          "direction": "up"}, "currentVersion": "1"})
    d = run(s, DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), observe(plan=plan))
    assert [j.role for j in d.jobs] == ["apply"]
    message = ("dry run: would apply 2 migrations (version 1 → version 3); 1 ran in a rolled-back transaction, "
               "1 no-transaction not run (3)")
    apply = done({"applied": [{"version": "2", "name": "b", "direction": "up"}], "dryRun": True,
                  "skippedInDryRun": ["3"], "previousVersion": "1", "currentVersion": "1", "message": message})
    d = run(s, d.status, observe(plan=plan, apply=apply))
    assert d.status.phase == "Succeeded" and d.status.message == message
    assert d.status.dry_run is True and d.status.current_version == "1"
    assert [e.reason for e in d.events] == ["DryRunSucceeded"]
    assert "applied" not in d.status.message


def test_rolling_back_to_zero_reports_no_version() -> None:
    """Regression: after targetVersion 0 the apply result's null currentVersion was ignored (stayed 'version 1')."""
    s = spec(targetVersion="0", allowDown=True, preChecks={"enabled": False})
    plan = done({"plan": {"hash": "abcdef0123456789", "pending": ["1"], "lint": [], "destructive": True,
                          "direction": "down"}, "currentVersion": "1"})
    d = run(s, DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), observe(plan=plan))
    assert d.status.current_version == "1"
    apply = done({"applied": [{"version": "1", "name": "a", "direction": "down"}], "dryRun": False,
                  "previousVersion": "1", "currentVersion": None, "message": "rolled back"})
    d = run(s, d.status, observe(plan=plan, apply=apply))
    assert d.status.phase == "Succeeded" and d.status.current_version == "" and d.status.previous_version == "1"
    assert d.status.message == "rolled back 1 migrations; now at no version"
    assert [a.direction for a in d.status.applied] == ["down"] and not d.status.dry_run


def test_a_failed_apply_that_read_no_version_keeps_the_known_one() -> None:
    s = spec(preChecks={"enabled": False})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Migrating", current_version="4")
    apply = done({"reason": "Unavailable", "message": "connection refused", "previousVersion": None,
                  "currentVersion": None}, ok=False)
    d = run(s, status, observe(plan=PLAN, apply=apply))
    assert d.status.phase == "Failed" and d.status.current_version == "4"


def test_a_drift_refusal_reports_the_current_version() -> None:
    """Regression: the plan Job's refusal carried currentVersion, the status dropped it."""
    drift = done({"command": "migrate plan", "ok": False, "exitCode": 2, "reason": "MigrationDrift",
                  "message": "migration 1_a was edited", "currentVersion": "0007"}, ok=False)
    d = run(spec(), DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), observe(plan=drift))
    assert d.status.phase == "Failed" and d.status.current_version == "0007"
    assert "MigrationDrift" in [c.reason for c in d.status.conditions]


def test_an_imported_history_is_announced() -> None:
    s = spec(importHistory={"from": "golang-migrate"}, preChecks={"enabled": False}, allowGaps=True)
    plan = done({"plan": {"hash": "abcdef0123456789", "pending": ["12"], "lint": [], "destructive": False},
                 "currentVersion": "10", "importedHistory": ["1", "2", "10"]})
    d = run(s, DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), observe(plan=plan))
    apply = done({"applied": [{"version": "12", "name": "x"}], "previousVersion": "10", "currentVersion": "12",
                  "importedHistory": ["1", "2", "10"], "importedFrom": {
                      "from": "golang-migrate", "table": "public.schema_migrations", "count": 3,
                      "newestVersion": "10", "repeatables": []}})
    d = run(s, d.status, observe(plan=plan, apply=apply))
    assert d.status.phase == "Succeeded"
    assert d.status.imported_history is not None and d.status.imported_history.versions == ["1", "2", "10"]
    assert d.status.message == ("imported 3 versions of golang-migrate's history (up to 10); applied 1 migrations; "
                                "now at version 12")
    assert [(e.reason, e.message) for e in d.events] == [
        ("HistoryImported", "imported 3 versions of golang-migrate's history (up to 10)"),
        ("MigrationSucceeded", d.status.message)]


FLYWAY_IMPORT = {"from": "flyway", "table": "public.flyway_schema_history", "count": 240, "newestVersion": "2.40",
                 "repeatables": [{"name": "R__views", "state": "changed"}, {"name": "R__grants", "state": "current"}]}


def test_an_imported_flyway_history_shows_its_repeatables_and_a_cut_list_in_status() -> None:
    """Regression: status kept nothing of the import, and the message took the 4 KiB cap's '... N more' marker
    for the newest version."""
    s = spec(importHistory={"from": "flyway"}, preChecks={"enabled": False}, allowGaps=True)
    apply = done({"applied": [{"version": "R__views", "name": "views"}], "previousVersion": "2.40",
                  "currentVersion": "2.40", "importedHistory": ["1", "1.1", "... 238 more"],
                  "importedFrom": FLYWAY_IMPORT})
    d = run(s, DatabaseMigrationStatus(source_hash="rev1", phase="Migrating"), observe(plan=PLAN, apply=apply))
    imported = d.status.imported_history
    assert imported is not None and imported.tool == "flyway" and imported.count == 240
    assert imported.versions == ["1", "1.1"] and imported.newest_version == "2.40"
    assert [(r.name, r.state) for r in imported.repeatables] == [("R__views", "changed"), ("R__grants", "current")]
    wire = d.status.to_wire()["importedHistory"]
    assert wire["from"] == "flyway" and wire["repeatables"][0] == {"name": "R__views", "state": "changed"}
    note = ("imported 240 versions of flyway's history (up to 2.40) and 2 repeatables (changed since, re-applied: "
            "R__views)")
    assert d.status.message.startswith(note + "; ")
    assert ("HistoryImported", note) in [(e.reason, e.message) for e in d.events]
    again = run(s, d.status, observe(plan=PLAN, apply=apply))  # the same result read again: one Event only
    assert "HistoryImported" not in [e.reason for e in again.events]


def test_an_import_kept_by_a_failed_apply_is_in_status_and_a_dry_run_imports_nothing() -> None:
    s = spec(importHistory={"from": "flyway"}, preChecks={"enabled": False}, allowGaps=True)
    failed = done({"reason": "MigrationFailed", "message": "2.41 failed", "previousVersion": "2.40",
                   "currentVersion": "2.40", "importedHistory": ["1"], "importedFrom": FLYWAY_IMPORT}, ok=False)
    d = run(s, DatabaseMigrationStatus(source_hash="rev1", phase="Migrating"), observe(plan=PLAN, apply=failed))
    assert d.status.phase == "Failed" and d.status.imported_history is not None
    dry = done({"applied": [], "dryRun": True, "importedHistory": ["1"], "importedFrom": FLYWAY_IMPORT})
    d = run(spec(importHistory={"from": "flyway"}, preChecks={"enabled": False}, dryRun=True),
            DatabaseMigrationStatus(source_hash="rev1", phase="Migrating"), observe(plan=PLAN, apply=dry))
    assert d.status.phase == "Succeeded" and d.status.imported_history is None
