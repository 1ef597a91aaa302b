"""DatabaseMigration with source.command end to end: a framework's migrate command wrapped by the operator.

The process executor ignores images and runs the container command on the host, so the Django
test project (tests/integration/django_app) and small ``python -c`` programs stand in for the
user's application image.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
MANAGE = Path(__file__).parent / "django_app" / "manage.py"
DJANGO_MIGRATE = [sys.executable, str(MANAGE), "migrate", "--noinput"]
HALF_DONE_THEN_FAIL = (
    "import os, psycopg\n"
    "assert os.environ['APP_RELEASE'] == 'rel-123'\n"
    "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as c:\n"
    "    c.execute('CREATE TABLE half_done (id int)')\n"
    "print('connecting to', os.environ['DATABASE_URL'])\n"
    "print('boom: migration 0002_add_status failed')\n"
    "raise SystemExit(3)\n"
)

CREATE_NOTES = (
    "import os, psycopg\n"
    "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as c:\n"
    "    c.execute('CREATE TABLE IF NOT EXISTS notes (id int)')\n"
    "    c.execute('INSERT INTO notes VALUES (1)')\n"
)


def command_spec(command: list[str], **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "source": {"command": {"image": "registry.example/mentorhub:1.4", "command": command,
                                   "env": [{"name": "DJANGO_SETTINGS_MODULE", "value": "mentorhub.settings"}]}},
            **extra}


def patch_spec(kube_client: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "databasemigrations", name, {"spec": spec}, _preload_content=False)


def table_exists(server: PostgresServer, database: str, table: str) -> bool:
    return server.psql(f"SELECT to_regclass('public.{table}') IS NOT NULL", database).strip() == "t"


def test_django_migrate_runs_between_pre_checks_and_verification(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    checks = [{"name": "bookings-kept", "sql": "SELECT count(*) FROM bookings", "expect": {"min": 500}}]
    harness.create_resource(kube_client, namespace, MIGRATION, "django",
                            command_spec(DJANGO_MIGRATE, verify={"checks": checks}))

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "django", {"Succeeded", "Failed", "RolledBack"})
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert {c["name"] for c in status["preChecks"]} >= {"connectivity", "blockingTransactions"}
    verification = {v["name"]: v["passed"] for v in status["verification"]}
    assert verification["bookings-kept"] is True and verification["foreignKeys"] is True, verification
    # The framework's plan ran first (test_operator_migration_command_plan.py); status.plan shows it.
    assert status["sourceHash"] and status["plan"]["command"]["framework"] == "django"
    assert table_exists(postgres, app_database, "mentorship_booking")
    assert postgres.psql("SELECT count(*) FROM django_migrations WHERE app = 'mentorship'", app_database) == "2"
    (django_history,) = status["frameworkHistory"]  # what Django recorded, snapshot before and compared after
    rows = int(postgres.psql("SELECT count(*) FROM django_migrations", app_database))
    assert django_history["framework"] == "django" and django_history["addedCount"] == rows
    recorded = set(postgres.psql("SELECT string_agg(app || '.' || name, ',') FROM django_migrations",
                                 app_database).split(","))
    added = django_history["added"]  # every name one Django recorded, at most 20 of them, no duplicates
    assert len(added) == len(set(added)) == min(rows, 20), (added, recorded)
    assert set(added) == recorded if rows <= 20 else set(added) < recorded, (added, recorded)
    assert {"mentorship.0001_initial", "mentorship.0002_booking_status"} <= recorded
    assert django_history["removed"] == [] and django_history["removedCount"] == 0
    assert bool(django_history.get("note")) == (rows > 20), django_history  # "N more added not shown"
    assert f"django: {rows} applied, 0 unapplied" in status["message"]
    jobs = {job["metadata"]["labels"]["dbops.io/role"]: job for job in harness.list_jobs(kube_client, namespace)}
    assert sorted(jobs) == ["check", "command", "plan", "verify"]
    container = jobs["command"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/mentorhub:1.4" and container["command"] == DJANGO_MIGRATE


def test_a_failing_command_is_rolled_back_with_its_output_in_status(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    password = postgres.password
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    spec = command_spec([sys.executable, "-c", HALF_DONE_THEN_FAIL], preChecks={"enabled": False},
                        backup={"enabled": True, "storage": harness.s3_storage(minio_server, bucket)},
                        onFailure="RestoreBackup")
    spec["source"]["command"]["env"].append({"name": "APP_RELEASE", "value": "rel-123"})
    harness.create_resource(kube_client, namespace, MIGRATION, "risky", spec)

    def finished_run() -> dict[str, Any] | None:
        body = harness.get_resource(kube_client, namespace, MIGRATION, "risky") or {}
        return body if (body.get("status") or {}).get("phase") in ("RolledBack", "Failed", "Succeeded") else None

    body = harness.eventually(finished_run, timeout=400, message="the failed command to be rolled back")
    status = body["status"]
    assert status["phase"] == "RolledBack", status
    assert "MigrationFailed" in status["message"] and "exited with code 3" in status["message"], status
    assert "boom: migration 0002_add_status failed" in status["message"]
    assert password not in str(status)
    restore = harness.get_resource(kube_client, namespace, "DatabaseRestore", status["restoreName"])
    assert restore is not None and restore["status"]["phase"] == "Succeeded"
    assert not table_exists(postgres, app_database, "half_done")
    assert table_exists(postgres, app_database, "bookings")
    command_jobs = [job for job in harness.list_jobs(kube_client, namespace)
                    if job["metadata"]["labels"]["dbops.io/role"] == "command"]
    assert len(command_jobs) == 1 and command_jobs[0]["status"].get("failed") == 1  # not retried


def test_a_failing_command_without_backup_fails_and_dry_run_is_refused(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, MIGRATION, "dry",
                            command_spec(DJANGO_MIGRATE, dryRun=True, preChecks={"enabled": False}))
    harness.create_resource(kube_client, namespace, MIGRATION, "broken", command_spec(
        [*DJANGO_MIGRATE[:3], "no_such_app", "--noinput"], preChecks={"enabled": False}))

    dry = harness.wait_for_phase(kube_client, namespace, MIGRATION, "dry", {"Succeeded", "Failed"})["status"]
    ready = next(c for c in dry["conditions"] if c["type"] == "Ready")
    assert dry["phase"] == "Failed" and ready["reason"] == "InvalidSpec" and "dryRun" in ready["message"]
    broken = harness.wait_for_phase(kube_client, namespace, MIGRATION, "broken", {"Succeeded", "Failed"})["status"]
    ready = next(c for c in broken["conditions"] if c["type"] == "Ready")
    # The framework's plan (`migrate no_such_app --plan`) fails first, before anything touches the database.
    assert broken["phase"] == "Failed" and ready["reason"] == "PlanFailed", broken
    assert "no_such_app" in broken["message"] and "exited with code 1" in broken["message"]
    assert not [job for job in harness.list_jobs(kube_client, namespace) if "dry" in job["metadata"]["name"]]


def test_manual_approval_of_the_spec_hash_and_a_new_image_re_runs(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    spec = command_spec([sys.executable, "-c", CREATE_NOTES], preChecks={"enabled": False},
                        approval={"mode": "Manual"})
    harness.create_resource(kube_client, namespace, MIGRATION, "gated", spec)
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "gated", {"AwaitingApproval", "Failed"})["status"]
    first_hash = status["sourceHash"]
    assert status["phase"] == "AwaitingApproval" and first_hash in status["message"], status
    assert status["plan"]["hash"] == first_hash and not table_exists(postgres, app_database, "notes")

    spec["approval"]["approvedPlanHash"] = first_hash
    patch_spec(kube_client, namespace, "gated", spec)
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "gated", {"Succeeded", "Failed"})["status"]
    assert status["phase"] == "Succeeded", status
    assert postgres.psql("SELECT count(*) FROM notes", app_database) == "1"

    spec["source"]["command"]["image"] = "registry.example/mentorhub:1.5"
    patch_spec(kube_client, namespace, "gated", spec)

    def awaiting_new_approval() -> dict[str, Any] | None:
        current = (harness.get_resource(kube_client, namespace, MIGRATION, "gated") or {}).get("status") or {}
        return current if current.get("phase") == "AwaitingApproval" and current["sourceHash"] != first_hash else None

    status = harness.eventually(awaiting_new_approval, timeout=120, message="the new image to need a new approval")
    spec["approval"]["approvedPlanHash"] = status["sourceHash"]
    patch_spec(kube_client, namespace, "gated", spec)

    def rerun_done() -> dict[str, Any] | None:
        current = (harness.get_resource(kube_client, namespace, MIGRATION, "gated") or {}).get("status") or {}
        return current if current.get("phase") in ("Succeeded", "Failed") and current["sourceHash"] != first_hash \
            else None

    status = harness.eventually(rerun_done, timeout=240, message="the re-run for the new image")
    assert status["phase"] == "Succeeded", status
    assert postgres.psql("SELECT count(*) FROM notes", app_database) == "2"
    images = sorted(job["spec"]["template"]["spec"]["containers"][0]["image"]
                    for job in harness.list_jobs(kube_client, namespace)
                    if job["metadata"]["labels"]["dbops.io/role"] == "command")
    assert images == ["registry.example/mentorhub:1.4", "registry.example/mentorhub:1.5"]
