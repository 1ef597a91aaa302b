"""DatabaseMigration.spec.rehearsal end to end: the plan rehearsed on a restored copy, its report in status, then the
real apply (after manual approval of the rehearsed hash); a rehearsal on a staging server. The refusals (limits,
space, privileges) are in test_operator_migration_rehearsal_refusals.py."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration import operator_harness as harness
from tests.integration import rehearsal_support as support
from tests.integration.rehearsal_support import MIGRATION, MIGRATIONS, scratch_databases, spec
from tests.integration.test_operator_migration import patch_spec, schema_dump

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(900)
# On PostgreSQL 15 and 18 (module scope: one server of each per file), the target enriched behind Secret "db".
postgres = support.postgres
target = support.target


def test_rehearsal_report_then_approved_apply_succeeds(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    storage = harness.s3_storage(minio_server, bucket)
    harness.create_resource(kube_client, namespace, "DatabaseBackup", "nightly",
                            {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
    harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "nightly", {"Succeeded"}, timeout=300)
    postgres.psql("INSERT INTO bookings (user_id) VALUES (7)", target)  # the database moves on after the backup
    before = schema_dump(postgres, target)

    harness.create_resource(kube_client, namespace, MIGRATION, "release",
                            spec(storage, approval={"mode": "Manual"}, rehearsal={"enabled": True}))
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "release", {"AwaitingApproval", "Failed"},
                                  timeout=400)
    status = body["status"]
    assert status["phase"] == "AwaitingApproval", status
    report = status["rehearsal"]
    assert report["outcome"] == "Passed" and report["planHash"] == status["plan"]["hash"], report
    assert report["backup"] == "nightly" and report["scratchDropped"] is True and report["jobName"]
    rows = {row["version"]: row for row in report["migrations"]}
    assert sorted(rows) == ["0001", "0002", "0003"]
    rewrite = {lock["table"]: lock for lock in rows["0002"]["exclusiveLocks"]}
    assert rewrite["public.bookings"]["tableBytes"] > 1 << 20 and rewrite["public.bookings"]["heldMs"] > 0
    assert rows["0003"]["rowsUpdated"] == 100 and report["rowsTouched"] >= 100
    assert any(change["table"] == "public.bookings" for change in rows["0002"]["sizeChanges"])
    assert report["largestExclusiveLock"]["table"] == "public.bookings"
    assert status["plan"]["hash"] in status["message"]
    assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []
    assert harness.wait_for_event(kube_client, namespace, "release", "RehearsalPassed")

    patch_spec(kube_client, namespace, "release", {"approval": {"mode": "Manual",
                                                                "approvedPlanHash": status["plan"]["hash"]}})
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "release", {"Succeeded", "Failed"}, timeout=300)
    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert body["status"]["rehearsal"]["outcome"] == "Passed"
    assert postgres.psql("SELECT data_type FROM information_schema.columns WHERE table_name = 'bookings' "
                         "AND column_name = 'user_id'", target) == "bigint"
    roles = sorted(job["metadata"]["labels"]["dbops.io/role"] for job in harness.list_jobs(kube_client, namespace)
                   if job["metadata"]["name"].startswith("release"))
    assert roles == ["apply", "plan", "rehearse"]


def test_rehearsal_on_a_staging_server_leaves_the_target_server_without_a_copy(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    storage = harness.s3_storage(minio_server, bucket)
    with running_postgres(18, password="staging-only-pw") as staging:
        harness.create_secret(kube_client, namespace, "staging", {"uri": staging.uri("postgres")})
        # Fails unless it runs on the staging server: proof the copy was not made on the target's.
        on_staging = ("DO $$ BEGIN IF current_setting('port')::int <> " + str(staging.port)
                      + " THEN RAISE EXCEPTION 'rehearsed on port %', current_setting('port'); END IF; END $$;")
        migrations = [*MIGRATIONS, {"version": "0004", "name": "on_staging", "up": on_staging}]
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "nightly",
                                {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "nightly", {"Succeeded"}, timeout=300)
        harness.create_resource(kube_client, namespace, MIGRATION, "staged", {
            **spec(storage, approval={"mode": "Manual"},
                   rehearsal={"enabled": True, "server": {"uriSecretRef": {"name": "staging", "key": "uri"}}}),
            "source": {"inline": migrations}})

        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "staged", {"AwaitingApproval", "Failed"},
                                      timeout=400)
        status = body["status"]
        assert status["phase"] == "AwaitingApproval", status
        report = status["rehearsal"]
        assert report["outcome"] == "Passed" and report["server"] == f"{staging.host}:{staging.port}", report
        assert sorted(row["version"] for row in report["migrations"]) == ["0001", "0002", "0003", "0004"]
        assert bool(report.get("warnings")) == (postgres.major != 18), report
        assert scratch_databases(staging) == [] and scratch_databases(postgres) == []
        assert schema_dump(postgres, target) == before
        job = next(job for job in harness.list_jobs(kube_client, namespace)
                   if job["metadata"]["labels"]["dbops.io/role"] == "rehearse")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert "--server-from-env" in container["args"] and "staging-only-pw" not in str(job)
        assert {"name": "DBOPS_REHEARSAL_DATABASE_URI",
                "valueFrom": {"secretKeyRef": {"name": "staging", "key": "uri"}}} in container["env"]
