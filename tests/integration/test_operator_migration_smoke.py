"""DatabaseMigration post-migration checks end to end on the test bed: query plans and sizes in status, the
application's own smoke-test Job after the apply Job (passing → Succeeded; failing with onFailure RestoreBackup
→ RolledBack, the migration undone; timing out → Failed)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
IMAGE = "registry.example/mentorhub:1.4"
ADD_STATUS = [{"version": "1", "name": "bookings_status",
               "up": "ALTER TABLE bookings ADD COLUMN status text NOT NULL DEFAULT 'confirmed';\n"
                     "CREATE INDEX bookings_user_idx ON bookings (user_id);"}]
# The application's smoke test: reads the new column through DATABASE_URL, as the app would.
SMOKE_OK = ("import os, psycopg\n"
            "with psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
            "    n = c.execute(\"SELECT count(*) FROM bookings WHERE status = 'confirmed'\").fetchone()[0]\n"
            "assert len(os.environ['SMOKE_TOKEN']) == 12  # from the Secret\n"
            "print('smoke ok', n)\n")
SMOKE_FAIL = ("import os, psycopg\n"
              "with psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
              "    c.execute('SELECT id, user_id, status FROM bookings LIMIT 1')\n"
              "print('GET /api/bookings -> 500: serializer expects column state')\n"
              "raise SystemExit(7)\n")


def spec(smoke: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "baselineVersion": "0",
            "source": {"inline": ADD_STATUS}, "lint": {"enabled": False},
            "verify": {"jobs": smoke, "queries": [
                {"name": "bookings-by-user", "sql": "SELECT id FROM bookings WHERE user_id = 7",
                 "usesIndex": ["bookings_user_idx"]}]}, **extra}


def smoke_test(name: str, program: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": [sys.executable, "-c", program],
            "env": [{"name": "SMOKE_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "token"}}}],
            **extra}


def column_exists(postgres: PostgresServer, database: str) -> bool:
    query = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'bookings' AND column_name = 'status'"
    return postgres.psql(query, database) == "1"


def secrets(kube_client: Any, namespace: str, postgres: PostgresServer, database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(database)})
    harness.create_secret(kube_client, namespace, "app", {"token": "s3cret-token"})


def test_a_passing_smoke_test_after_apply_succeeds_with_plans_and_sizes(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    secrets(kube_client, namespace, postgres, app_database)
    harness.create_resource(kube_client, namespace, MIGRATION, "release", spec([smoke_test("api", SMOKE_OK)]))
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "release", {"Succeeded", "Failed", "RolledBack"})
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["smokeTests"] == [{"name": "api", "jobName": status["smokeTests"][0]["jobName"],
                                     "state": "Succeeded", "message": "passed"}], status
    query = {v["name"]: v for v in status["verification"]}["query:bookings-by-user"]
    assert query["passed"] and "bookings_user_idx" in query["plan"], query
    assert "public.bookings_user_idx" in {i["name"] for i in status["sizes"]["indexes"]}, status["sizes"]
    jobs = {job["metadata"]["labels"]["dbops.io/role"]: job for job in harness.list_jobs(kube_client, namespace)}
    smoke_job = jobs["smoke"]
    assert smoke_job["metadata"]["name"] == status["smokeTests"][0]["jobName"]
    assert smoke_job["spec"]["activeDeadlineSeconds"] == 600
    container = smoke_job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE and "s3cret-token" not in str(smoke_job)
    # the smoke Job started only after the apply Job had succeeded
    apply_done = jobs["apply"]["status"]["completionTime"]
    assert smoke_job["metadata"]["creationTimestamp"] >= apply_done
    events = {e["reason"] for e in harness.list_events(kube_client, namespace)}
    assert "SmokeTestStarted" in events


def test_a_failing_smoke_test_rolls_the_migration_back(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str) -> None:
    secrets(kube_client, namespace, postgres, app_database)
    harness.create_resource(kube_client, namespace, MIGRATION, "release", spec(
        [smoke_test("api", SMOKE_FAIL)], onFailure="RestoreBackup",
        backup={"enabled": True, "storage": harness.s3_storage(minio_server, bucket)}))
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "release", {"Succeeded", "Failed", "RolledBack"},
                                  timeout=600)
    status = body["status"]
    assert status["phase"] == "RolledBack", status
    assert status["smokeTests"][0]["state"] == "Failed", status
    assert "exited with code 7" in status["smokeTests"][0]["message"], status
    assert "SmokeTestFailed: smoke test api" in status["message"] and "serializer expects column state" in \
        status["message"], status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "RolledBack"
    assert not column_exists(postgres, app_database)  # the restore undid the migration
    warnings = [e for e in harness.list_events(kube_client, namespace) if e["type"] == "Warning"]
    assert any("SmokeTestFailed" in e["message"] for e in warnings), warnings


def test_a_smoke_test_past_its_timeout_fails_the_run(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    secrets(kube_client, namespace, postgres, app_database)
    hang = smoke_test("slow", "import time; time.sleep(600)", timeout="3s")
    harness.create_resource(kube_client, namespace, MIGRATION, "release", spec([hang]))
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "release", {"Succeeded", "Failed", "RolledBack"},
                                  timeout=300)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "SmokeTestFailed" and "timed out after 3s" in failed["message"], failed
    assert column_exists(postgres, app_database)  # onFailure Abort leaves the applied migration
