"""A DatabaseMigration over a ConfigMap holding another tool's file set: Flyway V1.1__/V1_2__ versions, a gap
(spec.allowGaps), an R__ repeatable and a golang-migrate name with dots — every file reaches the Job (none
filtered out by the operator) and the run Succeeds with the dotted versions in status."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.integration import operator_harness as harness
from tests.integration.test_operator_errors import assert_failed_visibly

from dbops.api.base import GROUP, VERSION
from dbops_testbed.controlplane import ControlPlane
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


def _inline(*entries: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"version": version, "name": name, "up": up} for version, name, up in entries]


INLINE = _inline(
    ("1", "accounts", "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);"),
    ("1.1", "add_name", "ALTER TABLE accounts ADD COLUMN name text;"),
    ("1_2", "orders", "CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts (id));"),
    ("3", "seed", "INSERT INTO accounts (email) VALUES ('a@example.org');"),
)


def test_inline_migrations_take_dotted_versions_and_gaps_with_allow_gaps(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str,
        postgres: PostgresServer, app_database: str) -> None:
    """spec.source.inline takes the versions files take: dotted (1.1, 1_2), gaps with allowGaps. Without it the
    gap is named, entry by entry, as InvalidSpec with a Warning Event, before any Job; a plain gap is refused
    by the API server unless allowGaps."""
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    database = {"uriSecretRef": {"name": "db", "key": "uri"}}
    api = client.CustomObjectsApi(kube_client)

    def dry_run(name: str, spec: dict[str, Any]) -> str:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": MIGRATION, "metadata": {"name": name}, "spec": spec}
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "databasemigrations", body, dry_run="All")
        except ApiException as error:
            return str(error.body)
        return ""

    plain_gap = {"database": database, "source": {"inline": _inline(("1", "a", "SELECT 1"), ("3", "b", "SELECT 1"))}}
    assert "must be consecutive" in dry_run("plain-gap", plain_gap)
    assert dry_run("plain-gap", {**plain_gap, "allowGaps": True}) == ""
    assert "spec.source.inline[0].version" in dry_run(
        "bad-version", {"database": database, "source": {"inline": _inline(("1.x", "a", "SELECT 1"))}})

    harness.create_resource(kube_client, namespace, MIGRATION, "gapped", {"database": database,
                                                                          "source": {"inline": INLINE}})
    assert_failed_visibly(installed_crds, kube_client, namespace, MIGRATION, "gapped", "InvalidSpec",
                          "source.inline: gap in migration versions: inline[2] 1.2_orders is followed by "
                          "inline[3] 3_seed", "allowGaps")
    assert harness.list_jobs(kube_client, namespace) == []

    harness.create_resource(kube_client, namespace, MIGRATION, "allowed", {
        "database": database, "allowGaps": True, "baselineVersion": "0", "source": {"inline": INLINE}})
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "allowed", {"Succeeded", "Failed", "RolledBack"})
    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert [m["version"] for m in body["status"]["applied"]] == ["1", "1.1", "1.2", "3"]
    assert body["status"]["currentVersion"] == "3"
    assert postgres.psql("SELECT string_agg(version, ',' ORDER BY applied_at, version) FROM dbops_migrations"
                         " WHERE kind = 'migration'",
                         app_database) == "1,1.1,1.2,3"
    assert postgres.psql("SELECT count(*) FROM accounts WHERE name IS NULL", app_database) == "1"
