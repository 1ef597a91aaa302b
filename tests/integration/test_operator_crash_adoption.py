"""R7: the operator killed between Job creation and status patch, over 50 times, across backups, SQL migrations
and restores (with safety backups): no duplicate Job, every running Job adopted, every resource finishes."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(1500)
KILLS = 50
BACKUPS = 14
MIGRATIONS = 5
RESTORES = 3
# Jobs each resource creates: backup + verify; check + plan + apply; a safety backup (backup + verify) + restore.
EXPECTED_JOBS = 2 * BACKUPS + 3 * MIGRATIONS + 3 * RESTORES
FINAL = {"Succeeded", "Failed", "RolledBack"}
NOTES = [{"version": "0001", "name": "create_notes", "up": "CREATE TABLE notes (id int PRIMARY KEY, body text);"},
         {"version": "0002", "name": "add_at", "up": "ALTER TABLE notes ADD COLUMN at timestamptz;"}]


def test_operator_killed_after_every_job_creation_never_duplicates_jobs(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        postgres: PostgresServer, app_database: str, minio_server: MinioServer, bucket: str) -> None:
    storage = harness.s3_storage(minio_server, bucket)
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    scratch = [f"crash_{uuid.uuid4().hex[:8]}" for _ in range(MIGRATIONS + RESTORES)]
    for name in scratch:
        postgres.create_database(name)
    harness.create_secret(kube_client, namespace, "scratch", {f"db{i}": postgres.uri(name)
                                                               for i, name in enumerate(scratch)})
    resources: list[tuple[str, str]] = []
    try:
        for i in range(BACKUPS):
            harness.create_resource(kube_client, namespace, "DatabaseBackup", f"crash-{i:02d}", {
                "database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": storage})
            resources.append(("DatabaseBackup", f"crash-{i:02d}"))
        for i in range(MIGRATIONS):  # each on its own database: migrations of one database take turns
            harness.create_resource(kube_client, namespace, "DatabaseMigration", f"crash-m{i}", {
                "database": {"uriSecretRef": {"name": "scratch", "key": f"db{i}"}}, "source": {"inline": NOTES},
                "baselineVersion": "0000"})
            resources.append(("DatabaseMigration", f"crash-m{i}"))
        for i in range(RESTORES):
            target = MIGRATIONS + i
            harness.create_resource(kube_client, namespace, "DatabaseRestore", f"crash-r{i}", {
                "source": {"backupRef": {"name": f"crash-{i:02d}"}},
                "target": {"database": {"uriSecretRef": {"name": "scratch", "key": f"db{target}"}}},
                "clean": True, "confirmOverwrite": scratch[target],
                "safetyBackup": {"enabled": True, "storage": storage}})
            resources.append(("DatabaseRestore", f"crash-r{i}"))

        crashes, started = 0, time.monotonic()
        operator = harness.RunningOperator(installed_crds, namespace, "--workers", "1",
                                           module="tests.integration.faulty_operator")
        try:
            while (len(harness.list_jobs(kube_client, namespace)) < EXPECTED_JOBS
                   and time.monotonic() - started < 1000):
                operator.start()
                assert operator.process is not None
                try:
                    # No exit within 45 s: nothing to create now (a restore waits for its backup); go again.
                    crashes += operator.process.wait(timeout=45) == 137
                except Exception:
                    operator.kill()
                operator.process = None
        finally:
            operator.kill()
            operator.log_path.unlink(missing_ok=True)
        crashing = time.monotonic() - started
        assert crashes >= KILLS, f"only {crashes} crashes right after a Job creation"

        with harness.running_operator(installed_crds, namespace) as healthy:
            for kind, name in resources:
                body = harness.wait_for_phase(kube_client, namespace, kind, name, FINAL, timeout=300)
                assert body["status"]["phase"] == "Succeeded", (kind, name, body["status"])
            assert healthy.alive()
        jobs = harness.list_jobs(kube_client, namespace)
        per_owner = Counter((job["metadata"]["labels"]["dbops.io/name"], job["metadata"]["labels"]["dbops.io/role"])
                            for job in jobs)
        assert set(per_owner.values()) == {1}, per_owner
        assert len(jobs) == EXPECTED_JOBS, sorted(per_owner)
        for i in range(MIGRATIONS):  # the apply Job ran once: both migrations are in, recorded once each
            assert postgres.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes'",
                                 scratch[i]).strip() == "3"
        for i in range(RESTORES):
            assert postgres.psql("SELECT count(*) FROM bookings", scratch[MIGRATIONS + i]).strip() == "500"
        print(f"R7: {crashes} kills right after a Job creation ({len(jobs)} Jobs, {len(resources)} resources) "
              f"in {crashing:.0f}s; duplicate Jobs: 0")
    finally:
        for name in scratch:
            postgres.drop_database(name)
