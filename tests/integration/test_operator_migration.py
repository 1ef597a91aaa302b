"""DatabaseMigration end to end: plan, pre-checks, apply; manual approval; a failed run rolled back."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops_testbed import postgres as testbed_postgres
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
NOTES = [
    {"version": "0001", "name": "create_notes",
     "up": "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);",
     "down": "DROP TABLE notes;"},
    {"version": "0002", "name": "add_created_at", "up": "ALTER TABLE notes ADD COLUMN created_at timestamptz;"},
]


def migration_spec(inline: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"inline": inline},
            "baselineVersion": "0000", **extra}


def schema_dump(server: PostgresServer, database: str) -> str:
    """pg_dump --schema-only, without the random \\restrict lines of recent pg_dump versions."""
    output = subprocess.run(
        [str(testbed_postgres.client_bin_dir() / "pg_dump"), "--schema-only", "--no-owner", server.uri(database)],
        check=True, capture_output=True, text=True).stdout
    return "\n".join(line for line in output.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def patch_spec(kube_client: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "databasemigrations", name, {"spec": spec}, _preload_content=False)


def test_migration_plans_checks_and_applies(operator: harness.RunningOperator, kube_client: Any, namespace: str,
                                            postgres: PostgresServer, app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, MIGRATION, "schema", migration_spec(NOTES))

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "schema", {"Succeeded", "Failed", "RolledBack"})
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["currentVersion"].endswith("2")
    assert [m["version"] for m in status["applied"]] == ["0001", "0002"] or len(status["applied"]) == 2
    assert status["plan"]["hash"] and len(status["plan"]["pending"]) == 2
    assert status["preChecks"] and all(check["result"] != "fail" for check in status["preChecks"])
    assert status["sourceHash"]
    assert postgres.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes'",
                         app_database).strip() == "3"
    roles = sorted(job["metadata"]["labels"]["dbops.io/role"] for job in harness.list_jobs(kube_client, namespace))
    assert roles == ["apply", "check", "plan"]

    patch_spec(kube_client, namespace, "schema", migration_spec(
        [*NOTES, {"version": "0003", "name": "add_title", "up": "ALTER TABLE notes ADD COLUMN title text;"}]))

    def rerun_done() -> dict[str, Any] | None:
        body = harness.get_resource(kube_client, namespace, MIGRATION, "schema") or {}
        current = body.get("status") or {}
        return body if current.get("phase") == "Succeeded" and current.get("currentVersion", "").endswith("3") else None

    harness.eventually(rerun_done, timeout=300, message="the re-run for the new source")


def test_manual_approval_waits_for_the_plan_hash(operator: harness.RunningOperator, kube_client: Any,
                                                 namespace: str, postgres: PostgresServer, app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, MIGRATION, "gated",
                            migration_spec(NOTES, approval={"mode": "Manual"}, preChecks={"enabled": False}))
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "gated", {"AwaitingApproval", "Failed"})
    plan_hash = body["status"]["plan"]["hash"]
    assert body["status"]["phase"] == "AwaitingApproval" and plan_hash in body["status"]["message"]
    assert postgres.psql("SELECT to_regclass('notes') IS NULL", app_database).strip() == "t"

    patch_spec(kube_client, namespace, "gated", {"approval": {"mode": "Manual", "approvedPlanHash": plan_hash}})
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "gated", {"Succeeded", "Failed"})
    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert postgres.psql("SELECT to_regclass('notes') IS NOT NULL", app_database).strip() == "t"


def test_failed_migration_is_rolled_back_to_the_pre_migration_backup(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    common = {"backup": {"enabled": True, "storage": harness.s3_storage(minio_server, bucket)},
              "onFailure": "RestoreBackup", "lint": {"enabled": False}}
    harness.create_resource(kube_client, namespace, MIGRATION, "risky", migration_spec(NOTES[:1], **common))
    harness.wait_for_phase(kube_client, namespace, MIGRATION, "risky", {"Succeeded"})
    before = schema_dump(postgres, app_database)

    # Each migration commits on its own: 0002-0004 stay applied when 0005 fails, and the rollback must remove the
    # table and type 0002 created (a restore with --clean would leave them, as they are not in the backup).
    failing = [
        *NOTES[:1],
        {"version": "0002", "name": "note_tags", "up": "CREATE TYPE tag_kind AS ENUM ('topic', 'mood'); "
         "CREATE TABLE note_tags (id int PRIMARY KEY, note_id bigint REFERENCES notes (id), kind tag_kind);"},
        {"version": "0003", "name": "users_nickname", "up": "ALTER TABLE users ADD COLUMN nickname text;"},
        {"version": "0004", "name": "bookings_index", "up": "CREATE INDEX bookings_user ON bookings (user_id);"},
        {"version": "0005", "name": "broken", "up": "ALTER TABLE no_such_table ADD COLUMN x int;"},
    ]
    patch_spec(kube_client, namespace, "risky", migration_spec(failing, **common))

    def finished_run() -> dict[str, Any] | None:
        body = harness.get_resource(kube_client, namespace, MIGRATION, "risky") or {}
        status = body.get("status") or {}
        return body if status.get("phase") in ("RolledBack", "Failed") and status.get("restoreName") else (
            body if status.get("phase") == "Failed" else None)

    body = harness.eventually(finished_run, timeout=400, message="the failed run to be rolled back")
    status = body["status"]
    assert status["phase"] == "RolledBack", status
    assert "0002" in {applied["version"] for applied in status.get("applied") or []}, status
    restore = harness.get_resource(kube_client, namespace, "DatabaseRestore", status["restoreName"])
    assert restore is not None and restore["status"]["phase"] == "Succeeded"
    assert restore["spec"]["recreate"] is True
    assert postgres.psql("SELECT to_regclass('note_tags') IS NULL AND to_regtype('tag_kind') IS NULL",
                         app_database) == "t"
    assert schema_dump(postgres, app_database) == before
