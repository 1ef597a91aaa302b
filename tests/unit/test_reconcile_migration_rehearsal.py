"""DatabaseMigration rehearsal decisions: source backup, order, approval of the rehearsed hash, gates, Job args."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from tests.unit.test_reconcile_migration import PLAN, done, observe, run, spec

from dbops import errors
from dbops.api.common import Storage
from dbops.api.migration import DatabaseMigrationStatus
from dbops.cli.main import check_arguments
from dbops.reconcile import migration as m
from dbops.reconcile import migration_rehearsal as r
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING, JobOutcome
from dbops.specs import rehearsal_jobs
from dbops.specs.owner import Owner

HASH = "abcdef0123456789"
STORAGE = Storage.model_validate({"s3": {"bucket": "bkt", "endpoint": "http://minio:9000", "forcePathStyle": True}})
READY = r.RehearsalSource("Ready", "nightly", "s3://bkt/local/app/nightly", STORAGE)
PASSED = {"rehearsal": {"planHash": HASH, "outcome": "Passed", "reason": "Passed", "durationMs": 1200,
                        "rowsTouched": 7, "largestExclusiveLock": {"version": "1", "table": "app.bookings",
                                                                   "heldMs": 800, "tableBytes": 9000000},
                        "migrations": [{"version": "1", "name": "a", "durationMs": 1200, "rowsUpdated": 7,
                                        "exclusiveLocks": [{"table": "app.bookings", "heldMs": 800,
                                                            "tableBytes": 9000000}, "... 2 more"]}, "... 3 more"]}}


def with_rehearsal(observed: m.MigrationObserved, job: JobOutcome = MISSING,
                   source: r.RehearsalSource = READY) -> m.MigrationObserved:
    return dataclasses.replace(observed, rehearsal=r.RehearsalObserved(job, "m-rehearse-1", source))


def rehearsal_spec(**extra: Any) -> Any:
    extra.setdefault("rehearsal", {"enabled": True, "maxExclusiveLockTableSize": "1Mi"})
    return spec(preChecks={"enabled": False}, **extra)


def test_manual_approval_comes_after_the_rehearsal_and_covers_its_hash() -> None:
    s = rehearsal_spec(approval={"mode": "Manual", "approvedPlanHash": HASH})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Planning")
    decision = run(s, status, with_rehearsal(observe(plan=PLAN)))
    assert [j.role for j in decision.jobs] == ["rehearse"] and decision.status.phase == "Rehearsing"
    params = decision.jobs[0].params
    assert params.expect_plan_hash == HASH and params.max_lock_bytes == 1 << 20 and params.max_duration_seconds is None
    assert decision.status.rehearsal.outcome == "Running" and decision.status.rehearsal.backup == "nightly"
    assert params.available_space_bytes is None  # not declared: the runner reports the space as not checked

    decision = run(s, decision.status, with_rehearsal(observe(plan=PLAN), done(PASSED)))
    report = decision.status.rehearsal
    assert report.outcome == "Passed" and report.plan_hash == HASH and report.backup == "nightly"
    assert report.migrations[0].exclusive_locks[0].table == "app.bookings" and report.rows_touched == 7
    assert [j.role for j in decision.jobs] == ["apply"] and decision.jobs[0].params.expect_plan_hash == HASH
    assert any(e.reason == "RehearsalPassed" and "app.bookings" in e.message for e in decision.events)


def test_without_approval_it_waits_with_the_rehearsed_hash() -> None:
    s = rehearsal_spec(approval={"mode": "Manual"})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Rehearsing")
    decision = run(s, status, with_rehearsal(observe(plan=PLAN), done(PASSED)))
    assert decision.status.phase == "AwaitingApproval" and HASH in decision.status.message
    assert "rehearsed 1 migrations" in decision.status.message and "app.bookings (8.6 MiB) for 800 ms in 1" \
        in decision.status.message
    assert decision.jobs == []


def test_a_gate_fails_the_run_before_the_database_is_touched() -> None:
    blocked = {"reason": "RehearsalLockedLargeTable", "message": "migration 1_a held an ACCESS EXCLUSIVE lock on "
               "app.bookings", "rehearsal": {**PASSED["rehearsal"], "outcome": "Blocked",
                                             "reason": "RehearsalLockedLargeTable"}}
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Rehearsing")
    decision = run(rehearsal_spec(), status, with_rehearsal(observe(plan=PLAN), done(blocked, ok=False)))
    assert decision.status.phase == "Failed" and decision.status.condition("Failed").reason == "RehearsalLockedLargeTable"
    assert "was not touched" in decision.status.message and decision.jobs == []
    assert decision.status.rehearsal.outcome == "Blocked"
    assert [e.reason for e in decision.events if e.type == "Warning"] == ["RehearsalBlocked"]


def test_a_killed_rehearsal_names_the_scratch_database_it_may_have_left() -> None:
    killed = JobOutcome("Failed", {}, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Rehearsing")
    observed = dataclasses.replace(observe(plan=PLAN), rehearsal=r.RehearsalObserved(
        killed, "m-rehearse-1", READY, "dbops_rehearsal_0123456789ab"))
    decision = run(rehearsal_spec(), status, observed)
    assert decision.status.phase == "Failed" and decision.status.rehearsal.outcome == "Failed"
    assert "dbops_rehearsal_0123456789ab may be left" in decision.status.message


def test_a_passed_rehearsal_of_another_plan_does_not_count() -> None:
    other = {"rehearsal": {**PASSED["rehearsal"], "planHash": "0" * 16}}
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Rehearsing")
    decision = run(rehearsal_spec(), status, with_rehearsal(observe(plan=PLAN), done(other)))
    assert decision.status.phase == "Failed" and decision.jobs == []


def test_automatic_with_backup_rehearses_on_the_pre_migration_backup_after_it() -> None:
    s = rehearsal_spec(backup={"enabled": True, "storage": {"s3": {"bucket": "bkt"}}})
    assert r.uses_pre_backup(s)
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Planning")
    decision = run(s, status, with_rehearsal(observe(plan=PLAN), source=r.RehearsalSource("Waiting", "pre")))
    assert decision.children[0].kind == "DatabaseBackup" and decision.jobs == []
    decision = run(s, decision.status, with_rehearsal(observe(plan=PLAN, backup=ChildState("pre", "Succeeded"))))
    assert [j.role for j in decision.jobs] == ["rehearse"]


def test_missing_backup_fails_with_a_clear_reason_and_window_duration_is_the_limit() -> None:
    s = rehearsal_spec(window={"schedule": "0 * * * *", "duration": "90m"})
    status = DatabaseMigrationStatus(source_hash="rev1", phase="Planning")
    missing = r.newest_verified(s, [])
    decision = run(s, status, with_rehearsal(observe(plan=PLAN), source=missing))
    assert decision.status.phase == "Failed" and decision.status.condition("Failed").reason == "RehearsalBackupMissing"
    assert "verified DatabaseBackup" in decision.status.message
    assert r.max_duration_seconds(s) == 5400
    assert r.max_duration_seconds(rehearsal_spec(rehearsal={"enabled": True, "maxDuration": "5m"})) == 300


def backup_body(name: str, completed: str, *, database: str = "db", decoded: bool = True,
                phase: str = "Succeeded") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"database": {"uriSecretRef": {"name": database, "key": "uri"}}, "storage": {"s3": {"bucket": "bkt"}}},
            "status": {"phase": phase, "completedAt": completed, "verification": {"decoded": decoded},
                       "artifact": {"uri": f"s3://bkt/ns/{name}/dump.pgdump.zst",
                                    "manifestUri": f"s3://bkt/ns/{name}/manifest.json"}}}


def test_newest_verified_backup_of_the_same_database_is_chosen() -> None:
    bodies = [backup_body("old", "2026-11-01T00:00:00Z"), backup_body("new", "2026-11-20T00:00:00Z"),
              backup_body("unverified", "2026-11-25T00:00:00Z", decoded=False),
              backup_body("other-db", "2026-11-26T00:00:00Z", database="other"),
              backup_body("running", "2026-11-27T00:00:00Z", phase="Running")]
    source = r.newest_verified(spec(), bodies)
    assert source.state == "Ready" and source.backup_name == "new" and source.artifact_dir == "s3://bkt/ns/new"


@pytest.mark.parametrize("checks", [False, True])
def test_rehearsal_job_args_parse_as_the_runner_reads_them(checks: bool) -> None:
    s = rehearsal_spec(window={"schedule": "0 * * * *", "duration": "90m"}, dryRun=True,
                       verify={"checks": [{"name": "c", "sql": "select 1", "expect": {"rows": 1}}]} if checks else {})
    owner = Owner("DatabaseMigration", "ns", "m", "uid-1", 1)
    job_input = rehearsal_jobs.RehearsalJobInput("s3://bkt/ns/nightly", STORAGE, HASH, 5400.0, 1 << 20, 50 << 30)
    job = rehearsal_jobs.build_rehearsal_job(owner, s, job_input, source_config_map="m-source", revision="rev1",
                                             migration_files=["1_a.up.sql"], image="dbops:test", checks_file=checks)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["migrate", "rehearse"] and "--dry-run" not in args
    assert args[args.index("--scratch-database") + 1] == rehearsal_jobs.scratch_database(owner)
    assert args[args.index("--max-duration") + 1] == "5400000ms" and "--expect-plan-hash" in args
    assert args[args.index("--available-space-bytes") + 1] == str(50 << 30)
    assert job["metadata"]["labels"]["dbops.io/role"] == "rehearse"
    check_arguments(args)


def test_declared_available_space_reaches_the_rehearsal_job() -> None:
    s = rehearsal_spec(rehearsal={"enabled": True, "availableSpace": "1.5Gi"}, approval={"mode": "Manual"})
    decision = run(s, DatabaseMigrationStatus(source_hash="rev1", phase="Planning"), with_rehearsal(observe(plan=PLAN)))
    assert decision.jobs[0].params.available_space_bytes == 3 << 29


def test_a_staging_server_reaches_the_job_only_as_secret_references() -> None:
    s = rehearsal_spec(rehearsal={"enabled": True, "server": {
        "host": "staging.db", "port": 5433, "name": "postgres", "userSecretRef": {"name": "staging", "key": "user"},
        "passwordSecretRef": {"name": "staging", "key": "password"}, "sslMode": "require"}})
    owner = Owner("DatabaseMigration", "ns", "m", "uid-1", 1)
    job = rehearsal_jobs.build_rehearsal_job(
        owner, s, rehearsal_jobs.RehearsalJobInput("s3://bkt/ns/nightly", STORAGE, HASH), source_config_map="m-source",
        revision="rev1", migration_files=["1_a.up.sql"], image="dbops:test", checks_file=False)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {var["name"]: var for var in container["env"]}
    assert env["DBOPS_REHEARSAL_PGHOST"]["value"] == "staging.db" and env["DBOPS_REHEARSAL_PGPORT"]["value"] == "5433"
    assert env["DBOPS_REHEARSAL_PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "staging", "key": "password"}
    assert env["DBOPS_REHEARSAL_PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": "staging", "key": "user"}
    assert env["DBOPS_DATABASE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "db"  # the target's, unchanged
    assert "--server-from-env" in container["args"] and "staging.db" not in container["args"]
    check_arguments(container["args"])
    plain = rehearsal_jobs.build_rehearsal_job(
        owner, rehearsal_spec(), rehearsal_jobs.RehearsalJobInput("s3://bkt/ns/nightly", STORAGE, HASH),
        source_config_map="m-source", revision="rev1", migration_files=["1_a.up.sql"], image="dbops:test",
        checks_file=False)["spec"]["template"]["spec"]["containers"][0]
    assert "--server-from-env" not in plain["args"]
    assert not any(var["name"].startswith("DBOPS_REHEARSAL_") for var in plain["env"])


def test_staging_server_reads_only_its_own_variables() -> None:
    from dbops.cli import migrate_rehearse

    assert migrate_rehearse.SERVER_ENV_PREFIX == rehearsal_jobs.SERVER_ENV_PREFIX
    settings = migrate_rehearse.staging_server({
        "DBOPS_DATABASE_URI": "postgresql://app:target-pw@prod:5432/app", "PGHOST": "prod",
        "DBOPS_REHEARSAL_DATABASE_URI": "postgresql://stage:stage-pw@staging:6543/postgres",
        "DBOPS_REHEARSAL_PGSSLMODE": "require"})
    assert settings.params["host"] == "staging" and settings.params["port"] == "6543"
    assert settings.params["user"] == "stage" and settings.password == "stage-pw"
    assert settings.params["sslmode"] == "require"
    with pytest.raises(errors.InvalidSpecError, match="DBOPS_REHEARSAL_DATABASE_URI"):
        migrate_rehearse.staging_server({"DBOPS_DATABASE_URI": "postgresql://app@prod/app"})
