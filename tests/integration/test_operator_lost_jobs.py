"""A Job that disappears before the operator read its result never runs the work twice nor leaves a wrong status.

The operator is killed while the Job runs; the Job finishes and is removed (by the TTL-after-finished controller
of the test bed's kube-controller-manager, from ``jobTemplate.ttlSecondsAfterFinished: 0``, or deleted by hand);
then the operator starts again. Also a ttl of 0 while the operator is up."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.roles import JobRole
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
DATABASE = {"uriSecretRef": {"name": "db", "key": "uri"}}
SHOP = """
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, last_order_id bigint);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id),
                     invoice bigint NOT NULL DEFAULT nextval('invoice_no'), total numeric(10,2) NOT NULL);
ALTER TABLE customers ADD CONSTRAINT customers_last_order_fk FOREIGN KEY (last_order_id) REFERENCES orders(id)
    DEFERRABLE INITIALLY DEFERRED;
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, customer_id bigint
                     REFERENCES customers(id), kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
BEGIN;
INSERT INTO customers (id, name) SELECT g, 'customer ' || g FROM generate_series(1, 300) g;
INSERT INTO orders (id, customer_id, total) SELECT g, 1 + g % 300, (g % 97) * 1.25 FROM generate_series(1, 900) g;
UPDATE customers c SET last_order_id = (SELECT max(id) FROM orders o WHERE o.customer_id = c.id);
INSERT INTO events (at, customer_id, kind)
    SELECT DATE '2025-06-01' + (g % 400), 1 + g % 300, 'visit' FROM generate_series(1, 1200) g;
COMMIT;
"""
LATE_WRITES = """
BEGIN;
INSERT INTO customers (id, name) VALUES (5001, 'signed up after the restore');
INSERT INTO orders (id, customer_id, total) VALUES (9001, 5001, 42.00);
UPDATE customers SET last_order_id = 9001 WHERE id = 5001;
INSERT INTO events (at, customer_id, kind) VALUES ('2026-11-30', 5001, 'after-restore');
COMMIT;
"""




def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def warnings(kube_client: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [e for e in harness.list_events(kube_client, namespace)
            if e["type"] == "Warning" and e["involvedObject"]["name"] == name]


def warned(kube_client: Any, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    """The Warning Events of that reason (emitted just after the status is written: waited for)."""
    found: list[dict[str, Any]] = harness.eventually(
        lambda: [e for e in warnings(kube_client, namespace, name) if e["reason"] == reason], timeout=30,
        message=f"a {reason} Warning Event on {name}")
    return found


def lose_the_job(kube_client: Any, namespace: str, role: str, how: str) -> str:
    """Wait (operator down) until the role's Job finished; delete it by hand, or wait for the TTL controller
    when the ttl is the operator's to hand back. Returns the Job's name."""
    jobs = harness.eventually(lambda: harness.role_jobs(kube_client, namespace, role), timeout=60,
                              message=f"the {role} Job to exist")
    name = str(jobs[0]["metadata"]["name"])
    harness.eventually(lambda: not harness.role_jobs(kube_client, namespace, role) or all(
        harness.job_finished(j) for j in harness.role_jobs(kube_client, namespace, role)), timeout=300,
        message=f"the {role} Job to finish while the operator is down")
    if how == "deleted":
        if harness.role_jobs(kube_client, namespace, role):
            harness.delete_job(kube_client, namespace, name)
        harness.eventually(lambda: not harness.role_jobs(kube_client, namespace, role), timeout=60,
                           message=f"the {role} Job to be gone")
    return name


@pytest.fixture
def shop(postgres: PostgresServer) -> Any:
    name = "shop_lost_jobs"
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    postgres.create_database(name)
    postgres.psql(SHOP, name)
    yield name
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize("how", ["ttl", "deleted"])
def test_a_restore_job_gone_before_its_result_was_read_never_restores_twice(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        shop: str, minio_server: MinioServer, bucket: str, how: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(shop)})
    storage = harness.s3_storage(minio_server, bucket)
    with harness.running_operator(installed_crds, namespace) as operator:
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "nightly",
                                {"database": DATABASE, "storage": storage, "verify": {"decode": False}})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "nightly", {"Succeeded"}, timeout=300)
        postgres.psql("DELETE FROM events WHERE at < '2025-09-01'; UPDATE orders SET total = 0;", shop)
        harness.create_resource(kube_client, namespace, "DatabaseRestore", "undo", {
            "source": {"backupRef": {"name": "nightly"}}, "target": {"database": DATABASE},
            "clean": True, "confirmOverwrite": shop, "terminateConnections": True,
            "jobTemplate": {"ttlSecondsAfterFinished": 0}})
        restoring = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "undo", {"Restoring"},
                                           timeout=120)
        operator.kill()
        [job] = harness.role_jobs(kube_client, namespace, "restore")
        assert "ttlSecondsAfterFinished" not in job["spec"], "the user's ttl is the operator's to hand back"
        assert restoring["status"]["startedJobs"] == [
            {"name": job["metadata"]["name"], "role": "restore", "uid": job["metadata"]["uid"]}]
        job_name = lose_the_job(kube_client, namespace, "restore", how)
        body = harness.get_resource(kube_client, namespace, "DatabaseRestore", "undo")
        assert body is not None and body["status"]["phase"] == "Restoring", "the result was read before the kill"
        assert postgres.psql("SELECT count(*) FROM orders WHERE total = 0", shop).strip() == "9", \
            "the first restore did not bring the orders back"
        postgres.psql(LATE_WRITES, shop)  # what users wrote after the restore finished

        operator.start()
        status = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "undo", {"Succeeded", "Failed"},
                                        timeout=300)["status"]
        # Whatever the phase, the restore ran once: the writes made after it are still there.
        assert postgres.psql("SELECT name FROM customers WHERE id = 5001", shop).strip() == \
            "signed up after the restore"
        assert postgres.psql("SELECT count(*) FROM orders WHERE id = 9001", shop).strip() == "1"
        assert postgres.psql("SELECT count(*) FROM events WHERE kind = 'after-restore'", shop).strip() == "1"
        assert postgres.psql("SELECT count(*) FROM events", shop).strip() == "1201"
        assert len(harness.role_jobs(kube_client, namespace, "restore")) <= 1
        if how == "ttl":
            # The operator hands the ttl back only once the result is in status: the restore is read normally.
            assert status["phase"] == "Succeeded", status
            assert status["tablesRestored"] >= 4
            harness.eventually(lambda: not harness.role_jobs(kube_client, namespace, "restore"), timeout=120,
                               message="the user's ttl to remove the restore Job once its result was recorded")
        else:
            assert status["phase"] == "Failed", status
            condition = ready(status)
            assert condition["reason"] == "JobLost", condition
            assert job_name in condition["message"] and "re-create" in condition["message"], condition
            lost = warned(kube_client, namespace, "undo", "JobLost")
            assert job_name in lost[0]["message"], lost
        assert "Traceback" not in operator.logs()


@pytest.mark.parametrize("how", ["ttl", "deleted"])
def test_a_backup_job_gone_before_its_result_was_read_reports_the_stored_backup(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        shop: str, minio_server: MinioServer, bucket: str, how: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(shop)})
    with harness.running_operator(installed_crds, namespace) as operator:
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "lost", {
            "database": DATABASE, "storage": harness.s3_storage(minio_server, bucket), "verify": {"decode": True},
            "jobTemplate": {"ttlSecondsAfterFinished": 0}})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "lost", {"Running"}, timeout=120)
        operator.kill()
        lose_the_job(kube_client, namespace, "backup", how)
        manifests = [k for k in harness.s3_keys(minio_server, bucket) if "/lost/" in k and k.endswith("manifest.json")]
        assert manifests, "the backup Job stored nothing"
        operator.start()
        status = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "lost", {"Succeeded", "Failed"},
                                        timeout=300)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["artifact"]["manifestUri"].endswith(manifests[0]), status["artifact"]
        assert status["artifact"]["sha256"] and status["artifact"]["sizeBytes"] > 0
        assert status["source"]["database"] == shop
        assert status["verification"]["decoded"] is True
        assert not [e for e in warnings(kube_client, namespace, "lost") if e["reason"] == "AlreadyExists"]
        assert "Traceback" not in operator.logs()


def test_backup_and_verify_jobs_with_a_zero_ttl_while_the_operator_is_up(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        shop: str, minio_server: MinioServer, bucket: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(shop)})
    for index in range(3):
        harness.create_resource(kube_client, namespace, "DatabaseBackup", f"quick-{index}", {
            "database": DATABASE, "storage": harness.s3_storage(minio_server, bucket),
            "verify": {"decode": True}, "jobTemplate": {"ttlSecondsAfterFinished": 0}})
    for index in range(3):
        status = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", f"quick-{index}",
                                        {"Succeeded", "Failed"}, timeout=300)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["verification"]["decoded"] is True
    harness.eventually(lambda: not harness.list_jobs(kube_client, namespace), timeout=120,
                       message="the user's ttl to remove the finished Jobs")
    assert operator.alive()


NOTES = [
    {"version": "0001", "name": "create_notes",
     "up": "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
           "customer_id bigint REFERENCES customers(id), body text NOT NULL);"},
    {"version": "0002", "name": "backfill_notes",
     "up": "INSERT INTO notes (customer_id, body) SELECT id, 'welcome' FROM customers;"},
]


@pytest.mark.parametrize("how", ["ttl", "deleted"])
def test_a_migration_apply_job_gone_before_its_result_was_read_never_applies_twice(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        shop: str, how: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(shop)})
    with harness.running_operator(installed_crds, namespace) as operator:
        harness.create_resource(kube_client, namespace, "DatabaseMigration", "notes", {
            "database": DATABASE, "source": {"inline": NOTES}, "baselineVersion": "0000",
            "preChecks": {"enabled": False}, "jobTemplate": {"ttlSecondsAfterFinished": 0}})
        harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "notes", {"Migrating"}, timeout=180)
        operator.kill()
        job_name = lose_the_job(kube_client, namespace, "apply", how)
        assert postgres.psql("SELECT count(*) FROM notes", shop).strip() == "300"
        operator.start()
        status = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "notes",
                                        {"Succeeded", "Failed", "RolledBack"}, timeout=300)["status"]
        assert postgres.psql("SELECT count(*) FROM notes", shop).strip() == "300"
        assert len(harness.role_jobs(kube_client, namespace, "apply")) <= 1
        if how == "ttl":
            assert status["phase"] == "Succeeded", status
            assert len(status["applied"]) == 2, status["applied"]
        else:
            assert status["phase"] == "Failed", status
            condition = ready(status)
            assert condition["reason"] == "JobLost" and job_name in condition["message"], condition
            assert warned(kube_client, namespace, "notes", "JobLost")
        assert "Traceback" not in operator.logs()


def test_a_foreign_job_with_the_expected_name_is_not_adopted(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, postgres: PostgresServer,
        shop: str, minio_server: MinioServer, bucket: str) -> None:
    # Created while no operator runs, so the Job name (a hash of the resource's uid) can be taken first.
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(shop)})
    body = harness.create_resource(kube_client, namespace, "DatabaseBackup", "taken", {
        "database": DATABASE, "storage": harness.s3_storage(minio_server, bucket)})
    name = job_specs.job_name(Owner.from_body(body), JobRole.BACKUP)
    client.BatchV1Api(kube_client).create_namespaced_job(namespace, {
        "metadata": {"name": name, "labels": {"app": "someone-else"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox", "command": ["true"]}]}}}}, _preload_content=False)
    with harness.running_operator(installed_crds, namespace) as operator:
        status = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "taken", {"Succeeded", "Failed"},
                                        timeout=180)["status"]
        assert status["phase"] == "Failed", status
        condition = ready(status)
        assert condition["reason"] == "JobNameConflict" and name in condition["message"], condition
        assert name in warned(kube_client, namespace, "taken", "JobNameConflict")[0]["message"]
        assert not [k for k in harness.s3_keys(minio_server, bucket) if "/taken/" in k]
        assert "Traceback" not in operator.logs()
