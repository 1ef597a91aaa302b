"""Decision.requeue_after is honoured: with `--recheck-seconds 0` (only events) a migration waiting for its
maintenance window wakes at the window, although nothing sends an event then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)
MIGRATION = "DatabaseMigration"


def test_a_migration_waiting_for_its_window_starts_at_the_window_without_rechecks(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        postgres: PostgresServer, app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    start = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    with harness.running_operator(installed_crds, namespace, "--recheck-seconds", "0") as operator:
        harness.create_resource(kube_client, namespace, MIGRATION, "nightly", {
            "database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "baselineVersion": "0000",
            "source": {"inline": [{"version": "0001", "name": "add_notes", "up": "CREATE TABLE notes (id int);"}]},
            "window": {"schedule": f"{start.minute} {start.hour} * * *", "duration": "30m", "timeZone": "UTC"},
        })
        waiting = harness.wait_for_phase(kube_client, namespace, MIGRATION, "nightly", {"Waiting"}, timeout=60)
        assert datetime.fromisoformat(waiting["status"]["nextWindow"]) == start
        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "nightly", {"Succeeded", "Failed"},
                                      timeout=(start - datetime.now(UTC)).total_seconds() + 180)
        assert body["status"]["phase"] == "Succeeded", body["status"]
        started = datetime.fromisoformat(body["status"]["startedAt"].replace("Z", "+00:00"))
        assert start <= started <= start + timedelta(seconds=60), (start, started)
        assert postgres.psql("SELECT count(*) FROM notes", app_database).strip() == "0"
        assert operator.alive()
