"""dbops.io/retry end to end: a failed migration or backup runs again once per token, without being deleted; a
Succeeded one is not run again and says so; an operator killed after creating a retry's Job never duplicates it."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops.api.roles import JobRole
from dbops.api.status import RETRY_ANNOTATION
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(1200)
MIGRATION = "DatabaseMigration"
BACKUP = "DatabaseBackup"
TERMINAL = {"Succeeded", "Failed", "RolledBack"}
# 0001 commits on its own (with seed rows and a sequence); 0002 needs a table another service's deployment creates
# (billing_accounts), which is not there yet on the first attempt.
INVOICES = [
    {"version": "0001", "name": "create_invoices",
     "up": "CREATE SEQUENCE invoice_no START 1000; "
           "CREATE TABLE invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
           "no bigint NOT NULL DEFAULT nextval('invoice_no'), account_id bigint, total numeric(10,2) NOT NULL); "
           "INSERT INTO invoices (account_id, total) SELECT g, g * 1.5 FROM generate_series(1, 50) g;"},
    {"version": "0002", "name": "invoices_account_fk",
     "up": "ALTER TABLE invoices ADD CONSTRAINT invoices_account_fk FOREIGN KEY (account_id) "
           "REFERENCES billing_accounts (id);"},
]
BILLING = ("CREATE TABLE billing_accounts (id bigint PRIMARY KEY, name text NOT NULL); "
           "INSERT INTO billing_accounts SELECT g, 'account ' || g FROM generate_series(1, 50) g;")


def migration_spec() -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"inline": INVOICES},
            "baselineVersion": "0000"}


def annotate(kube_client: Any, namespace: str, kind: str, name: str, token: str,
             labels: dict[str, str] | None = None) -> None:
    plural = {MIGRATION: "databasemigrations", BACKUP: "databasebackups"}[kind]
    metadata: dict[str, Any] = {"annotations": {RETRY_ANNOTATION: token}}
    if labels:
        metadata["labels"] = labels
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, {"metadata": metadata}, _preload_content=False)


def events(kube_client: Any, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in harness.list_events(kube_client, namespace)
            if e["involvedObject"]["name"] == name and e["reason"] == reason]


def jobs_of(kube_client: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [j for j in harness.list_jobs(kube_client, namespace) if j["metadata"]["labels"].get("dbops.io/name") == name]


def wait_for_attempt(kube_client: Any, namespace: str, kind: str, name: str, attempt: int,
                     timeout: float = 300) -> dict[str, Any]:
    """The resource once its run numbered ``attempt`` ended."""
    def ended() -> dict[str, Any] | None:
        body = harness.get_resource(kube_client, namespace, kind, name) or {}
        status = body.get("status") or {}
        return body if status.get("attempts") == attempt and status.get("phase") in TERMINAL else None

    return harness.eventually(ended, timeout=timeout, message=f"{kind} {name} attempt {attempt} to end")


def failed_migration(kube_client: Any, namespace: str, postgres: PostgresServer, database: str,
                     name: str) -> dict[str, Any]:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(database)})
    harness.create_resource(kube_client, namespace, MIGRATION, name, migration_spec())
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, name, TERMINAL)
    assert body["status"]["phase"] == "Failed", body["status"]
    assert "billing_accounts" in body["status"]["message"]
    assert postgres.psql("SELECT count(*) FROM invoices", database).strip() == "50"
    return body


def test_a_failed_migration_retried_after_the_fix_succeeds_as_attempt_two(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    failed = failed_migration(kube_client, namespace, postgres, app_database, "invoices")["status"]
    first_jobs = {j["metadata"]["name"] for j in jobs_of(kube_client, namespace, "invoices")}
    assert failed["attempts"] == 1 and {s["name"] for s in failed["startedJobs"]} == first_jobs
    reason = next(c["reason"] for c in failed["conditions"] if c["type"] == "Ready")

    postgres.psql(BILLING, app_database)  # the other service deployed: the missing table exists now
    postgres.psql("INSERT INTO invoices (account_id, total) VALUES (7, 99.00)", app_database)  # written meanwhile
    annotate(kube_client, namespace, MIGRATION, "invoices", "2026-11-30T05:30:00Z")
    body = wait_for_attempt(kube_client, namespace, MIGRATION, "invoices", 2)
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["lastRetryToken"] == "2026-11-30T05:30:00Z" and status["currentVersion"].endswith("2")
    assert not [c for c in status["conditions"] if c["type"] == "Failed"], "Failed stayed after the retry succeeded"
    [previous] = status["previousAttempts"]
    assert (previous["attempt"], previous["phase"], previous["reason"]) == (1, "Failed", reason)
    assert set(previous["jobs"]) == first_jobs and previous["retryToken"] == "2026-11-30T05:30:00Z"
    # A fresh run: plan, pre-checks and apply again, under new names, the first attempt's Jobs kept.
    assert status["plan"]["pending"] == ["0002"], "the retry did not plan again (0001 is applied already)"
    roles = Counter(j["metadata"]["labels"]["dbops.io/role"] for j in jobs_of(kube_client, namespace, "invoices"))
    assert roles == Counter({"plan": 2, "check": 2, "apply": 2}), roles
    assert first_jobs < {j["metadata"]["name"] for j in jobs_of(kube_client, namespace, "invoices")}
    # 0001 ran once: its rows are there once, with the row written between the attempts.
    assert postgres.psql("SELECT count(*), max(no) FROM invoices", app_database).strip() == "51|1050"
    assert postgres.psql("SELECT count(*) FROM pg_constraint WHERE conname = 'invoices_account_fk'",
                         app_database).strip() == "1"
    assert len(events(kube_client, namespace, "invoices", "RetryStarted")) == 1

    # The same token again (any other change of the object, e.g. a label Argo CD adds) runs nothing.
    annotate(kube_client, namespace, MIGRATION, "invoices", "2026-11-30T05:30:00Z", labels={"team": "billing"})
    # A new token on a Succeeded migration: not applied again, a Normal RetryIgnored Event says why.
    annotate(kube_client, namespace, MIGRATION, "invoices", "again")
    [ignored] = harness.eventually(lambda: events(kube_client, namespace, "invoices", "RetryIgnored"), timeout=60,
                                   message="a RetryIgnored Event")
    assert ignored["type"] == "Normal" and "Succeeded" in ignored["message"]
    time.sleep(12)  # two re-check periods (--recheck-seconds 5): nothing may start
    after = harness.get_resource(kube_client, namespace, MIGRATION, "invoices")["status"]
    assert after["phase"] == "Succeeded" and after["attempts"] == 2 and after["lastRetryToken"] == "again"
    assert len(jobs_of(kube_client, namespace, "invoices")) == 6
    assert len(events(kube_client, namespace, "invoices", "RetryStarted")) == 1
    assert len(events(kube_client, namespace, "invoices", "RetryIgnored")) == 1


def test_a_failed_backup_retried_with_the_same_token_twice_runs_once(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        minio_server: MinioServer, bucket: str) -> None:
    # No periodic re-check: the annotation's own event must start the retry (the retry-requested handler).
    with harness.running_operator(installed_crds, namespace, "--recheck-seconds", "0") as operator:
        backup_retried_twice(kube_client, namespace, postgres, minio_server, bucket)
        assert "Handler 'retry-requested' succeeded" in operator.logs()


def backup_retried_twice(kube_client: Any, namespace: str, postgres: PostgresServer, minio_server: MinioServer,
                         bucket: str) -> None:
    missing = f"ledger_{namespace[-6:].replace('-', '_')}"  # not created yet: the backup fails
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(missing)})
    harness.create_resource(kube_client, namespace, BACKUP, "ledger", {
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "storage": harness.s3_storage(minio_server, bucket), "verify": {"decode": True}})
    body = harness.wait_for_phase(kube_client, namespace, BACKUP, "ledger", {"Succeeded", "Failed"})
    assert body["status"]["phase"] == "Failed", body["status"]

    annotate(kube_client, namespace, BACKUP, "ledger", "one")  # still no database: the retry fails as well
    second = wait_for_attempt(kube_client, namespace, BACKUP, "ledger", 2)["status"]
    assert second["phase"] == "Failed" and [p["attempt"] for p in second["previousAttempts"]] == [1]
    annotate(kube_client, namespace, BACKUP, "ledger", "one", labels={"touched": "yes"})
    time.sleep(12)
    still = harness.get_resource(kube_client, namespace, BACKUP, "ledger")["status"]
    assert still["attempts"] == 2 and still["phase"] == "Failed", "the same token ran twice"
    assert Counter(j["metadata"]["labels"]["dbops.io/role"] for j in jobs_of(kube_client, namespace, "ledger")) == \
        Counter({"backup": 2})

    postgres.create_database(missing)
    postgres.psql("CREATE TABLE entries (id int PRIMARY KEY, amount numeric); "
                  "INSERT INTO entries SELECT g, g FROM generate_series(1, 100) g;", missing)
    annotate(kube_client, namespace, BACKUP, "ledger", "two")
    third = wait_for_attempt(kube_client, namespace, BACKUP, "ledger", 3)["status"]
    assert third["phase"] == "Succeeded", third
    assert third["verification"]["decoded"] and third["artifact"]["uri"]
    assert [p["attempt"] for p in third["previousAttempts"]] == [1, 2]
    roles = Counter(j["metadata"]["labels"]["dbops.io/role"] for j in jobs_of(kube_client, namespace, "ledger"))
    assert roles == Counter({"backup": 3, "verify": 1}), roles


def test_an_operator_killed_after_each_retry_job_creation_never_duplicates_one(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str) -> None:
    with harness.running_operator(installed_crds, namespace):
        body = failed_migration(kube_client, namespace, postgres, app_database, "crashy")
    owner = Owner.from_body(body)
    postgres.psql(BILLING, app_database)
    annotate(kube_client, namespace, MIGRATION, "crashy", "after-the-fix")
    operator = harness.RunningOperator(installed_crds, namespace, "--workers", "1",
                                       module="tests.integration.faulty_operator")
    crashes, deadline = 0, time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            operator.start()
            assert operator.process is not None
            try:
                code = operator.process.wait(timeout=60)
            except Exception:
                operator.kill()
                code = None
            operator.process = None
            crashes += code == 137
            status = (harness.get_resource(kube_client, namespace, MIGRATION, "crashy") or {}).get("status") or {}
            if status.get("attempts") == 2 and status.get("phase") in TERMINAL:
                break
    finally:
        operator.kill()
        operator.log_path.unlink(missing_ok=True)
    status = harness.get_resource(kube_client, namespace, MIGRATION, "crashy")["status"]
    assert status["phase"] == "Succeeded" and status["attempts"] == 2, status
    assert crashes >= 3, f"only {crashes} crashes after a Job creation (plan, check and apply of attempt 2)"
    jobs = jobs_of(kube_client, namespace, "crashy")
    roles = Counter(j["metadata"]["labels"]["dbops.io/role"] for j in jobs)
    assert roles == Counter({"plan": 2, "check": 2, "apply": 2}), f"duplicate Jobs: {roles}"
    revision = status["sourceHash"]
    assert job_specs.job_name(owner, JobRole.APPLY, f"{revision}.2") in {j["metadata"]["name"] for j in jobs}
    assert postgres.psql("SELECT count(*) FROM invoices", app_database).strip() == "50"
    print(f"crashes between a retry's Job creation and its status patch: {crashes}; duplicate Jobs: 0")


def test_a_lost_restore_retried_restores_again_after_a_new_safety_backup_keeping_the_first(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    postgres.psql("CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL); "
                  "CREATE TABLE moves (id int PRIMARY KEY, account_id int REFERENCES accounts(id), amount numeric); "
                  "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 200) g; "
                  "INSERT INTO moves SELECT g, 1 + g % 200, g FROM generate_series(1, 600) g;", app_database)
    storage = harness.s3_storage(minio_server, bucket)
    database = {"uriSecretRef": {"name": "db", "key": "uri"}}
    operator = harness.RunningOperator(installed_crds, namespace)
    operator.start()
    try:
        harness.create_resource(kube_client, namespace, BACKUP, "before", {"database": database, "storage": storage,
                                                                           "verify": {"decode": False}})
        harness.wait_for_phase(kube_client, namespace, BACKUP, "before", {"Succeeded"}, timeout=300)
        postgres.psql("UPDATE accounts SET balance = 0; DELETE FROM moves WHERE id > 300;", app_database)  # the accident
        harness.create_resource(kube_client, namespace, "DatabaseRestore", "undo", {
            "source": {"backupRef": {"name": "before"}}, "target": {"database": database}, "clean": True,
            "confirmOverwrite": app_database, "terminateConnections": True,
            "safetyBackup": {"enabled": True, "storage": storage}})
        harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "undo", {"Restoring"}, timeout=300)
        operator.kill()  # the restore Job finishes and is deleted by hand before the operator read its result
        [job] = harness.wait_for_finished_job(kube_client, namespace, "restore", "the restore Job to finish")
        harness.delete_job(kube_client, namespace, job["metadata"]["name"])
        harness.eventually(lambda: not harness.role_jobs(kube_client, namespace, "restore"), timeout=60,
                           message="the restore Job gone")
        operator.start()
        lost = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "undo", {"Succeeded", "Failed"})
        assert lost["status"]["phase"] == "Failed", lost["status"]
        assert next(c for c in lost["status"]["conditions"] if c["type"] == "Ready")["reason"] == "JobLost"
        first_safety = lost["status"]["safetyBackupName"]

        postgres.psql("INSERT INTO accounts VALUES (999, 5)", app_database)  # written after the lost restore
        annotate_restore(kube_client, namespace, "undo", "checked-the-target")
        body = wait_for_attempt(kube_client, namespace, "DatabaseRestore", "undo", 2)
    finally:
        operator.stop()
        operator.log_path.unlink(missing_ok=True)
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    [previous] = status["previousAttempts"]
    assert (previous["reason"], previous["children"]) == ("JobLost", [first_safety])
    assert status["safetyBackupName"] != first_safety
    safety = {b["metadata"]["name"]: b["status"]["phase"] for b in harness.list_resources(kube_client, namespace, BACKUP)}
    assert safety == {"before": "Succeeded", first_safety: "Succeeded", status["safetyBackupName"]: "Succeeded"}
    assert len(harness.role_jobs(kube_client, namespace, "restore")) == 1  # attempt 2's (attempt 1's was deleted)
    # The backup's state again: the row written between the attempts went with the rest (the new safety backup
    # holds it), the accident is undone.
    assert postgres.psql("SELECT count(*), sum(balance) FROM accounts", app_database).strip() == "200|20000"
    assert postgres.psql("SELECT count(*) FROM moves", app_database).strip() == "600"


def annotate_restore(kube_client: Any, namespace: str, name: str, token: str) -> None:
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "databaserestores", name, {"metadata": {"annotations": {RETRY_ANNOTATION: token}}},
        _preload_content=False)
