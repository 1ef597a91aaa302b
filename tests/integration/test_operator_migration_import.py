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
    reasons = {e["reason"] for e in harness.wait_for_event(kube_client, namespace, "imported", "MigrationSucceeded")}
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


def test_flyway_repeatables_and_a_goose_history_are_imported_into_status(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        tmp_path: Path) -> None:
    """Regression: status kept nothing of an import (the message named the versions' count only), so Flyway's
    R__ repeatables — one of them edited since Flyway ran it, so this run re-applies it — were shown nowhere; and
    goose's goose_db_version could not be imported at all."""
    from tests.integration.test_migrate_adoption import psql_file
    from tests.integration.test_migrate_flyway import FLYWAY_HISTORY, flyway_project, flyway_row
    from tests.integration.test_migrate_import_goose import FILES as GOOSE_FILES
    from tests.integration.test_migrate_import_goose import Goose

    from dbops.runner.migrations import flyway

    src = flyway_project(tmp_path / "flyway")
    goose_src = tmp_path / "goose"
    goose_src.mkdir()
    for name, text in GOOSE_FILES.items():
        (goose_src / name).write_text(text)
    core = client.CoreV1Api(kube_client)
    databases = {name: f"imp_{uuid.uuid4().hex[:8]}" for name in ("flyway", "goose")}
    for name, db in databases.items():
        postgres.create_database(db)
        harness.create_secret(kube_client, namespace, name, {"uri": postgres.uri(db)})

    def crc(name: str) -> int:
        return flyway.checksum((src / name).read_text(encoding="utf-8"))

    db = databases["flyway"]
    for name in ("V1__create_accounts.sql", "V1.1__add_name.sql", "V1_2__orders.sql", "R__functions.sql",
                 "R__views.sql"):
        psql_file(postgres, db, src / name)
    postgres.psql("\n".join([FLYWAY_HISTORY, flyway_row(1, "1", "BASELINE", "<< Flyway Baseline >>", None),
                             flyway_row(2, "1.1", "SQL", "V1.1__add_name.sql", crc("V1.1__add_name.sql")),
                             flyway_row(3, "1.2", "SQL", "V1_2__orders.sql", crc("V1_2__orders.sql")),
                             flyway_row(4, None, "SQL", "R__functions.sql", crc("R__functions.sql")),
                             flyway_row(5, None, "SQL", "R__views.sql", crc("R__views.sql"))]), db)
    (src / "R__functions.sql").write_text(  # edited since Flyway ran it
        "CREATE OR REPLACE FUNCTION order_count(bigint) RETURNS bigint LANGUAGE sql STABLE "
        "AS $$ SELECT count(*) * 10 FROM orders WHERE account_id = $1 $$;\n")
    goose = Goose(postgres, databases["goose"], goose_src, legacy=True)
    for version in (1, 2, 3, 4, 5, 6):
        goose.up(version)
    goose.down(6)

    for name, directory in (("flyway", src), ("goose", goose_src)):
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name), data={p.name: p.read_text() for p in directory.iterdir()}))
        harness.create_resource(kube_client, namespace, MIGRATION, name, {
            "database": {"uriSecretRef": {"name": name, "key": "uri"}}, "source": {"configMapRef": {"name": name}},
            "allowGaps": True, "importHistory": {"from": name}})

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "flyway", TERMINAL)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["importedHistory"] == {
        "from": "flyway", "table": "public.flyway_schema_history", "count": 3, "newestVersion": "1.2",
        "versions": ["1", "1.1", "1.2"],
        "repeatables": [{"name": "R__functions", "state": "changed"}, {"name": "R__views", "state": "current"}]}
    assert [m["version"] for m in status["applied"]] == ["1.10", "2", "4", "R__functions"]
    assert status["message"].startswith("imported 3 versions of flyway's history (up to 1.2) and 2 repeatables "
                                        "(changed since, re-applied: R__functions); applied 4 migrations")
    assert postgres.psql("SELECT order_count(1)", db) == "10"

    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "goose", TERMINAL)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["importedHistory"]["from"] == "goose" and status["importedHistory"]["count"] == 5
    assert status["importedHistory"]["versions"] == ["00001", "00002", "00003", "00004", "00005"]
    assert [m["version"] for m in status["applied"]] == ["00006", "00007"]
    assert postgres.psql("SELECT count(display_name) FROM users", databases["goose"]) == "50"
    events = [(e["involvedObject"]["name"], e["reason"], e["message"]) for e in harness.list_events(kube_client,
                                                                                                    namespace)]
    assert ("goose", "HistoryImported", "imported 5 versions of goose's history (up to 00005)") in events
