"""Argo CD health checks against statuses of real runs: capture every state, compare with tests/data/argocd.

Set DBOPS_UPDATE_GOLDEN=1 to rewrite the captured objects (new cases get the health the Lua gives them: review).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from tests import argocd
from tests.integration import operator_harness as harness
from tests.integration.test_operator_migration import NOTES, migration_spec, patch_spec

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATIONS = ("gated", "windowed", "broken", "rolled_back", "dry_run_command")
BROKEN = [*NOTES[:1], {"version": "0002", "name": "broken", "up": "ALTER TABLE no_such_table ADD COLUMN x int;"}]

# States every run reaches (transient ones such as Running are compared when seen).
REQUIRED = {
    "DatabaseBackup": {"nightly-nostatus", "nightly-succeeded", "wrong-database-failed", "missing-secret-pending"},
    "DatabaseMigration": {"gated-awaitingapproval", "gated-succeeded", "windowed-waiting", "broken-failed",
                          "rolled-back-rolledback", "dry-run-command-failed"},
    "DatabaseRestore": {"restore-nightly-succeeded", "restore-failed-backup-failed", "restore-missing-pending"},
    "DatabaseBackupSchedule": {"daily-active", "paused-suspended", "failing-active-lastfailed"},
}


def case_key(body: dict[str, Any]) -> str:
    status = body.get("status") or {}
    key = f"{body['metadata']['name']}-{str(status.get('phase', 'nostatus')).lower()}"
    last = status.get("lastBackup") or {}
    return key + ("-lastfailed" if last.get("phase") == "Failed" else "")


def normalized(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object as Argo CD would see it, without server bookkeeping, in namespace `apps`."""
    metadata = body["metadata"]
    kept = {"apiVersion": body["apiVersion"], "kind": body["kind"],
            "metadata": {"name": metadata["name"], "namespace": namespace, "generation": metadata.get("generation")},
            "spec": body.get("spec")}
    if body.get("status") is not None:
        kept["status"] = body["status"]
    text = yaml.safe_dump(kept, sort_keys=True).replace(namespace, "apps")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def create_scenarios(kube_client: Any, namespace: str, postgres: PostgresServer, app_database: str,
                     storage: dict[str, Any]) -> list[dict[str, Any]]:
    """Every scenario's resource; returns the bodies as created (before the operator wrote a status)."""
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_secret(kube_client, namespace, "dbpw", {"password": postgres.password})
    uri = {"uriSecretRef": {"name": "db", "key": "uri"}}
    wrong = {"host": postgres.host, "port": postgres.port, "name": "no_such_database", "user": postgres.user,
             "passwordSecretRef": {"name": "dbpw", "key": "password"}}
    created = [
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "nightly", {"database": uri, "storage": storage}),
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "wrong-database",
                                {"database": wrong, "storage": storage}),
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "missing-secret", {
            "database": {"uriSecretRef": {"name": "absent", "key": "uri"}}, "storage": storage}),
    ]
    later = (datetime.now(UTC).hour + 12) % 24
    for name, spec in {
        "gated": migration_spec(NOTES, approval={"mode": "Manual"}, preChecks={"enabled": False}),
        "windowed": migration_spec(NOTES, window={"schedule": f"0 {later} * * *", "duration": "1h"}),
        "broken": migration_spec(BROKEN, lint={"enabled": False}, preChecks={"enabled": False}),
        "rolled-back": migration_spec(BROKEN, lint={"enabled": False}, onFailure="RestoreBackup",
                                      backup={"enabled": True, "storage": storage}),
        "dry-run-command": {"database": uri, "dryRun": True,
                            "source": {"command": {"image": "app:1", "command": ["python", "manage.py", "migrate"]}}},
    }.items():
        # Each migration gets a database of its own: they run at once, and a rollback re-creates its target.
        database = f"{app_database}_{name.replace('-', '_')}"
        harness.create_secret(kube_client, namespace, f"db-{name}", {"uri": postgres.create_database(database)})
        spec["database"] = {"uriSecretRef": {"name": f"db-{name}", "key": "uri"}}
        created.append(harness.create_resource(kube_client, namespace, "DatabaseMigration", name, spec))
    harness.create_secret(kube_client, namespace, "db-copy", {"uri": postgres.create_database(f"{app_database}_copy")})
    copy = {"uriSecretRef": {"name": "db-copy", "key": "uri"}}
    for name, backup in {"restore-nightly": "nightly", "restore-failed-backup": "wrong-database",
                         "restore-missing": "no-such-backup"}.items():
        created.append(harness.create_resource(kube_client, namespace, "DatabaseRestore", name, {
            "source": {"backupRef": {"name": backup}}, "target": {"database": copy}}))
    template = {"spec": {"database": uri, "storage": storage}}
    for name, spec in {
        "daily": {"schedule": "0 2 * * *", "backupTemplate": template},
        "paused": {"schedule": "0 2 * * *", "suspend": True, "backupTemplate": template},
        "failing": {"schedule": "*/1 * * * *", "backupTemplate": {"spec": {"database": wrong, "storage": storage}}},
    }.items():
        created.append(harness.create_resource(kube_client, namespace, "DatabaseBackupSchedule", name, spec))
    return created


@pytest.fixture
def extra_databases(postgres: PostgresServer, app_database: str) -> Iterator[None]:
    """Drops the databases the scenarios create next to the application database."""
    yield
    for name in (f"{app_database}_copy", *(f"{app_database}_{m}" for m in MIGRATIONS)):
        postgres.drop_database(name)


def test_health_of_real_statuses_matches_the_stored_cases(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, minio_server: MinioServer, bucket: str, extra_databases: None) -> None:
    names = set()
    captured: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in argocd.KINDS}
    for body in create_scenarios(kube_client, namespace, postgres, app_database,
                                 harness.s3_storage(minio_server, bucket)):
        names.add((body["kind"], body["metadata"]["name"]))
        captured[body["kind"]][case_key(body)] = normalized(body, namespace)
    approved = False
    started = time.monotonic()
    deadline = started + 300
    while time.monotonic() < deadline:
        for kind in argocd.KINDS:
            for body in harness.list_resources(kube_client, namespace, kind):
                if (kind, body["metadata"]["name"]) in names and case_key(body) not in captured[kind]:
                    captured[kind][case_key(body)] = normalized(body, namespace)
                    print(f"{time.monotonic() - started:6.1f}s captured {kind} {case_key(body)}")
        gated = captured["DatabaseMigration"].get("gated-awaitingapproval")
        if gated is not None and not approved:
            patch_spec(kube_client, namespace, "gated",
                       {"approval": {"mode": "Manual", "approvedPlanHash": gated["status"]["plan"]["hash"]}})
            approved = True
        if all(REQUIRED[kind] <= set(captured[kind]) for kind in argocd.KINDS):
            break
        time.sleep(0.3)
    update = os.environ.get("DBOPS_UPDATE_GOLDEN") == "1"
    missing = {kind: sorted(REQUIRED[kind] - set(captured[kind])) for kind in argocd.KINDS}
    if any(missing.values()):
        for kind in argocd.KINDS:
            print(kind, {key: (body.get("status") or {}).get("message") for key, body in captured[kind].items()})
    assert not any(missing.values()), f"states never reached: {missing}"

    for kind in argocd.KINDS:
        folder = argocd.TESTDATA_DIR / kind
        stored = {name: expected for name, expected, _ in argocd.load_cases(kind)} if (
            folder / "health_test.yaml").exists() else {}
        if update:
            (folder / "testdata").mkdir(parents=True, exist_ok=True)
            for key, body in captured[kind].items():
                (folder / "testdata" / f"{key}.yaml").write_text(yaml.safe_dump(body, sort_keys=True))
                stored.setdefault(key, argocd.health(kind, body))
            tests = [{"healthStatus": stored[key], "inputPath": f"testdata/{key}.yaml"} for key in sorted(stored)]
            (folder / "health_test.yaml").write_text(yaml.safe_dump({"tests": tests}, sort_keys=False, width=1000))
        assert REQUIRED[kind] <= set(stored), f"{kind}: stored cases lack {sorted(REQUIRED[kind] - set(stored))}"
        for key, body in captured[kind].items():
            if key in stored:
                fresh = argocd.health(kind, body)
                assert fresh["status"] == stored[key]["status"], (kind, key, fresh, stored[key], body.get("status"))
