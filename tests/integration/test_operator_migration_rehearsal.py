"""DatabaseMigration.spec.rehearsal end to end: the plan rehearsed on a restored copy, its report in status, then the
real apply (after manual approval of the rehearsed hash); a rehearsal over a limit stops with the database untouched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration import operator_harness as harness
from tests.integration.test_operator_migration import patch_spec, schema_dump

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
# Foreign keys both ways (bookings → users from the fixture, users → their last booking), a partitioned table,
# sequences, and enough bookings that a rewrite is a real copy.
ENRICH = """
INSERT INTO bookings (user_id) SELECT 1 + g % 200 FROM generate_series(1, 60000) g;
ALTER TABLE users ADD COLUMN last_booking_id int REFERENCES bookings (id);
UPDATE users u SET last_booking_id = (SELECT max(id) FROM bookings b WHERE b.user_id = u.id);
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, happened_on date NOT NULL, user_id int REFERENCES users (id))
    PARTITION BY RANGE (happened_on);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events (happened_on, user_id) SELECT DATE '2026-01-01' + g % 300, 1 + g % 200 FROM generate_series(1, 3000) g;
"""
MIGRATIONS = [
    {"version": "0001", "name": "bookings_note", "up": "ALTER TABLE bookings ADD COLUMN note text;"},
    {"version": "0002", "name": "bookings_user_bigint", "up": "ALTER TABLE bookings ALTER COLUMN user_id TYPE bigint;"},
    {"version": "0003", "name": "users_email_lower", "up": "UPDATE users SET email = lower(email) WHERE id % 2 = 0;"},
]


@pytest.fixture(scope="module", params=(15, 18), ids=lambda major: f"pg{major}")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """The rehearsal end to end on both supported majors (the shared operator fixture runs PostgreSQL 18 only)."""
    with running_postgres(request.param) as server:
        yield server


def spec(s3: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"inline": MIGRATIONS},
            "baselineVersion": "0000", "lint": {"enabled": False}, "preChecks": {"enabled": False}, **extra}


def scratch_databases(postgres: PostgresServer) -> list[str]:
    return postgres.psql("SELECT datname FROM pg_database WHERE datname LIKE 'dbops\\_rehearsal\\_%'").split()


def events_of(kube_client: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [event for event in harness.list_events(kube_client, namespace)
            if event.get("involvedObject", {}).get("name") == name]


@pytest.fixture
def target(kube_client: Any, namespace: str, postgres: PostgresServer, app_database: str) -> str:
    postgres.psql(ENRICH, app_database)
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    return app_database


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
    assert "RehearsalPassed" in {event["reason"] for event in events_of(kube_client, namespace, "release")}

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


def test_rehearsal_over_the_lock_limit_stops_before_the_database_is_touched(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    checksum = postgres.psql("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM bookings b", target)
    storage = harness.s3_storage(minio_server, bucket)
    # Automatic approval with a pre-migration backup: the copy is restored from that backup.
    harness.create_resource(kube_client, namespace, MIGRATION, "risky", spec(
        storage, backup={"enabled": True, "storage": storage},
        rehearsal={"enabled": True, "maxExclusiveLockTableSize": "512Ki"}))

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "risky", {"Succeeded", "Failed"}, timeout=400)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RehearsalLockedLargeTable" and "public.bookings" in failed["message"], failed
    assert "0002_bookings_user_bigint" in failed["message"] and "not touched" in failed["message"]
    assert status["rehearsal"]["outcome"] == "Blocked" and status["rehearsal"]["backup"] == status["backupName"]
    warnings = [e for e in events_of(kube_client, namespace, "risky") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["RehearsalBlocked"] and "public.bookings" in warnings[0]["message"]
    assert schema_dump(postgres, target) == before
    assert postgres.psql("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM bookings b", target) == checksum
    assert postgres.psql("SELECT to_regclass('public.dbops_migrations') IS NULL", target) == "t"
    assert scratch_databases(postgres) == []
    assert "apply" not in {job["metadata"]["labels"]["dbops.io/role"]
                           for job in harness.list_jobs(kube_client, namespace)}


def test_rehearsal_longer_than_the_window_stops_before_the_database_is_touched(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    storage = harness.s3_storage(minio_server, bucket)
    slow = [*MIGRATIONS[:1], {"version": "0002", "name": "slow_backfill", "up": "SELECT pg_sleep(17);"}]
    # A window of 15 s opening every minute: no rehearsal.maxDuration, so the window's duration is the limit.
    harness.create_resource(kube_client, namespace, MIGRATION, "slow", {
        **spec(storage, backup={"enabled": True, "storage": storage}, rehearsal={"enabled": True}),
        "source": {"inline": slow}, "window": {"schedule": "* * * * *", "duration": "15s"}})

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "slow", {"Succeeded", "Failed"}, timeout=500)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RehearsalExceededWindow", failed
    assert "longer than the 15s allowed" in failed["message"] and "not touched" in failed["message"], failed
    report = status["rehearsal"]
    assert report["outcome"] == "Blocked" and report["durationMs"] >= 17000, report
    assert [row["version"] for row in report["migrations"]] == ["0001", "0002"]
    warnings = [e for e in events_of(kube_client, namespace, "slow") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["RehearsalBlocked"]
    assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []
    assert postgres.psql("SELECT to_regclass('public.dbops_migrations') IS NULL", target) == "t"
    assert "apply" not in {job["metadata"]["labels"]["dbops.io/role"]
                           for job in harness.list_jobs(kube_client, namespace)}


def test_rehearsal_refuses_a_copy_that_does_not_fit_the_declared_space(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    before = schema_dump(postgres, target)
    storage = harness.s3_storage(minio_server, bucket)
    harness.create_resource(kube_client, namespace, MIGRATION, "cramped", spec(
        storage, backup={"enabled": True, "storage": storage},
        rehearsal={"enabled": True, "availableSpace": "1Mi"}))

    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "cramped", {"Succeeded", "Failed"}, timeout=400)
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RehearsalInsufficientSpace" and "not enough space" in failed["message"], failed
    report = status["rehearsal"]
    assert report["copyBytes"] > 1 << 20 and report["spaceCheck"].startswith("failed"), report
    assert report["migrations"] == [] and report["scratchDropped"] is True
    warnings = [e for e in events_of(kube_client, namespace, "cramped") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["RehearsalFailed"], warnings
    assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []


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


def test_rehearsal_with_a_role_without_createdb_is_refused_by_name_and_the_target_is_untouched(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer, target: str,
        minio_server: MinioServer, bucket: str) -> None:
    # The application's own role: it can read everything (a backup or plan needs no more) but cannot create the
    # scratch database. The backup was taken by the platform with the superuser Secret ("db").
    role, password = f"app_{uuid.uuid4().hex[:8]}", "pw-app-without-createdb"
    postgres.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOCREATEDB; GRANT pg_read_all_data TO {role}")
    try:
        harness.create_secret(kube_client, namespace, "app", {"uri": postgres.uri(target, user=role,
                                                                                 password=password)})
        storage = harness.s3_storage(minio_server, bucket)
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "nightly",
                                {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "nightly", {"Succeeded"}, timeout=300)
        before = schema_dump(postgres, target)
        harness.create_resource(kube_client, namespace, MIGRATION, "unprivileged", {
            **spec(storage, rehearsal={"enabled": True, "backupRef": {"name": "nightly"}}),
            "database": {"uriSecretRef": {"name": "app", "key": "uri"}}})

        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "unprivileged", {"Succeeded", "Failed"},
                                      timeout=400)
        status = body["status"]
        assert status["phase"] == "Failed", status
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "RehearsalInsufficientPrivileges", failed
        assert f'role "{role}"' in failed["message"] and "CREATEDB" in failed["message"], failed
        assert "not touched" in failed["message"] and "Traceback" not in failed["message"]
        assert status["rehearsal"]["migrations"] == [] and status["rehearsal"]["backup"] == "nightly"
        warnings = [e for e in events_of(kube_client, namespace, "unprivileged") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["RehearsalFailed"], warnings
        assert "RehearsalInsufficientPrivileges" in warnings[0]["message"] and role in warnings[0]["message"]
        assert password not in str(status) + str(warnings) + str(harness.list_jobs(kube_client, namespace))
        assert schema_dump(postgres, target) == before and scratch_databases(postgres) == []
        assert postgres.psql("SELECT to_regclass('public.dbops_migrations') IS NULL", target) == "t"
        assert "apply" not in {job["metadata"]["labels"]["dbops.io/role"]
                               for job in harness.list_jobs(kube_client, namespace)}
    finally:
        postgres.psql(f"DROP ROLE IF EXISTS {role}")
