"""spec.importHistory: a DatabaseMigration over a golang-migrate project whose database golang-migrate ran (its
schema_migrations at the sixth of 24 files, gaps, a `_v6.0` name, CONCURRENTLY files under other tools'
directives) imports that history in its apply Job and applies only the rest; a dirty history fails the resource
naming it, before any DDL. Also a dry run, which keeps the version and says what it would do."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness
from tests.integration.test_migrate_adoption import golang_migrate_history
from tests.integration.test_migrate_import_history import golang_migrate_ran

from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
TERMINAL = {"Succeeded", "Failed", "RolledBack"}


def test_a_golang_migrate_history_is_imported_by_the_operator(operator: harness.RunningOperator, kube_client: Any,
                                                              namespace: str, postgres: PostgresServer,
                                                              tmp_path: Path) -> None:
    src = golang_migrate_history(tmp_path / "migrations")
    client.CoreV1Api(kube_client).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="golang"), data={p.name: p.read_text() for p in src.iterdir()}))
    databases = {}
    for name in ("imported", "dirty", "dry"):
        databases[name] = f"imp_{uuid.uuid4().hex[:8]}"
        postgres.create_database(databases[name])
        harness.create_secret(kube_client, namespace, name, {"uri": postgres.uri(databases[name])})
    every = golang_migrate_ran(postgres, databases["imported"], src, 6)
    golang_migrate_ran(postgres, databases["dirty"], src, 3, dirty=True)
    golang_migrate_ran(postgres, databases["dry"], src, 6)
    for name in databases:
        spec = {"database": {"uriSecretRef": {"name": name, "key": "uri"}},
                "source": {"configMapRef": {"name": "golang"}}, "allowGaps": True,
                "importHistory": {"from": "golang-migrate"}, "dryRun": name == "dry"}
        harness.create_resource(kube_client, namespace, MIGRATION, name, spec)

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "imported", TERMINAL)["status"]
    assert status["phase"] == "Succeeded", status
    assert [m["version"] for m in status["applied"]] == every[6:]
    assert status["currentVersion"] == every[-1] and status["previousVersion"] == every[5]
    assert status["message"].startswith(f"imported 6 versions of golang-migrate's history (up to {every[5]})")
    assert postgres.psql("SELECT string_agg(kind || ':' || n, ',' ORDER BY kind) FROM (SELECT kind, count(*) n"
                         " FROM dbops_migrations GROUP BY kind) k", databases["imported"]) == \
        f"imported:6,migration:{len(every) - 6}"
    reasons = {e["reason"] for e in harness.list_events(kube_client, namespace)
               if e["involvedObject"]["name"] == "imported"}
    assert {"HistoryImported", "MigrationSucceeded"} <= reasons

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "dirty", TERMINAL)["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert status["phase"] == "Failed" and failed["reason"] == "DirtyHistory", status
    assert "dirty at version 4" in failed["message"]
    assert postgres.psql("SELECT to_regclass('dbops_migrations') IS NULL", databases["dirty"]) == "t"

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "dry", TERMINAL)["status"]
    assert status["phase"] == "Succeeded" and status["dryRun"] is True, status
    assert status["message"].startswith(f"dry run: would apply {len(every) - 6} migrations (version {every[5]} → "
                                        f"version {every[-1]})"), status["message"]
    assert status["currentVersion"] == every[5]
    assert postgres.psql("SELECT to_regclass('dbops_migrations') IS NULL", databases["dry"]) == "t"
