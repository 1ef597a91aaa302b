"""What a DatabaseMigration's status says when the plan is refused or the run goes down: a drifted history fails
MigrationDrift with the database's version in status and `dbops migrate repair` in the message; rolling a
database back to targetVersion "0" Succeeds saying it rolled back and is at no version (regressions: the
version was dropped, or stayed at the one before)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness
from tests.integration.migrate_support import run_dbops, write_migrations
from tests.integration.test_migrate_refusals import HISTORY

from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
TERMINAL = {"Succeeded", "Failed", "RolledBack"}
DOWNS = {"0001_customers_orders": "ALTER TABLE customers DROP CONSTRAINT customers_last_order_fk;\n"
                                  "DROP TABLE orders;\nDROP TABLE customers;\n",
         "0002_events": "DROP TABLE events;\nDROP SEQUENCE event_ids;\n",
         "0003_seed": "DELETE FROM events;\nUPDATE customers SET last_order_id = NULL;\nDELETE FROM orders;\n"
                      "DELETE FROM customers;\n"}


def files(history: dict[str, tuple[str, str | None]]) -> dict[str, str]:
    data = {f"{label}.up.sql": up for label, (up, _) in history.items()}
    data.update({f"{label}.down.sql": DOWNS[label] for label in history})
    return data


def test_drift_and_a_rollback_to_zero_are_reported_with_the_version(operator: harness.RunningOperator,
                                                                    kube_client: Any, namespace: str,
                                                                    postgres: PostgresServer, tmp_path: Path) -> None:
    databases = {name: f"ref_{uuid.uuid4().hex[:8]}" for name in ("drifted", "zero")}
    src = write_migrations(tmp_path / "m", {label: (up, DOWNS[label]) for label, (up, _) in HISTORY.items()})
    for name, db in databases.items():
        postgres.create_database(db)
        harness.create_secret(kube_client, namespace, name, {"uri": postgres.uri(db)})
        code, doc, _ = run_dbops(postgres, db, "migrate", "apply", "--source", str(src))
        assert code == 0, doc
    edited = {**HISTORY, "0002_events": (HISTORY["0002_events"][0].replace("CREATE SEQUENCE event_ids;",
                                                                           "CREATE SEQUENCE event_ids CACHE 10;"),
                                         None)}
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="edited"),
                                                                    data=files(edited)))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="same"),
                                                                    data=files(HISTORY)))
    harness.create_resource(kube_client, namespace, MIGRATION, "drifted", {
        "database": {"uriSecretRef": {"name": "drifted", "key": "uri"}},
        "source": {"configMapRef": {"name": "edited"}}})
    harness.create_resource(kube_client, namespace, MIGRATION, "zero", {
        "database": {"uriSecretRef": {"name": "zero", "key": "uri"}}, "source": {"configMapRef": {"name": "same"}},
        "targetVersion": "0", "allowDown": True, "preChecks": {"enabled": False}})

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "drifted", TERMINAL)["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert status["phase"] == "Failed" and failed["reason"] == "MigrationDrift", status
    assert status["currentVersion"] == "0003"
    assert "dbops migrate repair --version 0002" in failed["message"]

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "zero", TERMINAL)["status"]
    assert status["phase"] == "Succeeded", status
    assert status.get("currentVersion", "") == "" and status["previousVersion"] == "0003"
    assert status["message"] == "rolled back 3 migrations; now at no version"
    assert [(a["version"], a["direction"]) for a in status["applied"]] == [
        ("0003", "down"), ("0002", "down"), ("0001", "down")]
    assert postgres.psql("SELECT to_regclass('customers') IS NULL", databases["zero"]) == "t"
