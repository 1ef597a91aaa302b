"""A DatabaseMigration over a ConfigMap holding another tool's file set: Flyway V1.1__/V1_2__ versions, a gap
(spec.allowGaps), an R__ repeatable and a golang-migrate name with dots — every file reaches the Job (none
filtered out by the operator) and the run Succeeds with the dotted versions in status."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
FILES = {
    "V1__create_accounts.sql": "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);\n",
    "V1.1__add_name.sql": "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS name text;\n",
    "V1_2__orders.sql": ("CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint NOT NULL "
                         "REFERENCES accounts (id));\n"),
    "V1.10__placeholder.sql": "-- moved to V3; kept so Flyway's history stays the same\n",
    "V3__orders_index.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_account ON orders (account_id);\n",
    "V3__orders_index.sql.conf": "executeInTransaction=false\n",
    "R__views.sql": ("CREATE OR REPLACE VIEW account_orders AS SELECT a.id, count(o.id) AS orders FROM accounts a "
                     "LEFT JOIN orders o ON o.account_id = a.id GROUP BY a.id;\n"),
}


def test_a_flyway_configmap_with_gaps_and_repeatables_is_applied(operator: harness.RunningOperator,
                                                                 kube_client: Any, namespace: str,
                                                                 postgres: PostgresServer, app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    client.CoreV1Api(kube_client).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="flyway"), data=FILES))
    spec = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"configMapRef": {"name": "flyway"}},
            "allowGaps": True, "baselineVersion": "0"}
    harness.create_resource(kube_client, namespace, MIGRATION, "flyway", spec)
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "flyway", {"Succeeded", "Failed", "RolledBack"})
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert [m["version"] for m in status["applied"]] == ["1", "1.1", "1.2", "1.10", "3", "R__views"]
    assert status["currentVersion"] == "3"
    assert postgres.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_account'::regclass",
                         app_database) == "t"
    assert postgres.psql("SELECT count(*) FROM account_orders", app_database) == "0"
    apply_job = next(job for job in harness.list_jobs(kube_client, namespace)
                     if job["metadata"]["labels"]["dbops.io/role"] == "apply")
    container = apply_job["spec"]["template"]["spec"]["containers"][0]
    assert "--allow-gaps" in container["args"]
    mounted = {item["key"] for volume in apply_job["spec"]["template"]["spec"]["volumes"]
               if volume.get("configMap") for item in volume["configMap"].get("items", [])}
    assert set(FILES) <= mounted


def test_without_allow_gaps_the_gap_is_named(operator: harness.RunningOperator, kube_client: Any, namespace: str,
                                             postgres: PostgresServer, app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    client.CoreV1Api(kube_client).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="golang"), data={
            "000001_init_schema_v6.0.up.sql": "CREATE TABLE accounts (id bigserial PRIMARY KEY);\n",
            "000003_projects.up.sql": "CREATE TABLE projects (id bigserial PRIMARY KEY);\n"}))
    spec = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"configMapRef": {"name": "golang"}},
            "baselineVersion": "0"}
    harness.create_resource(kube_client, namespace, MIGRATION, "golang", spec)
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "golang", {"Succeeded", "Failed", "RolledBack"})
    status = body["status"]
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec", failed
    assert "000001_init_schema_v6.0 is followed by 000003_projects" in failed["message"], failed
    assert "allowGaps" in failed["message"]


def test_an_atlas_configmap_reaches_the_job_with_its_sum_and_a_tampered_file_is_named(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    from tests.integration.test_migrate_atlas import FILES as ATLAS_FILES
    from tests.unit.test_migration_atlas import sum_file

    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    tampered = {**ATLAS_FILES, "atlas.sum": sum_file(ATLAS_FILES),
                "20240212120000_orders.sql": ATLAS_FILES["20240212120000_orders.sql"] + "-- edited\n"}
    client.CoreV1Api(kube_client).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="atlas"), data=tampered))
    spec = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"configMapRef": {"name": "atlas"}},
            "baselineVersion": "0"}
    harness.create_resource(kube_client, namespace, MIGRATION, "atlas", spec)
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "atlas", {"Succeeded", "Failed", "RolledBack"})
    failed = next(c for c in body["status"]["conditions"] if c["type"] == "Failed")
    assert body["status"]["phase"] == "Failed" and failed["reason"] == "InvalidSpec", body["status"]
    assert "20240212120000_orders.sql does not match its hash in atlas.sum" in failed["message"]
    assert postgres.psql("SELECT to_regclass('accounts') IS NULL", app_database) == "t"
