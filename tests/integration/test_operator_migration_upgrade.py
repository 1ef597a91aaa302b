"""An operator upgrade re-keys finished migrations instead of running them again (revision hashes of older releases)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import read_json
from tests.integration import operator_harness as harness
from tests.integration.test_operator_migration import NOTES, migration_spec

from dbops.api.base import GROUP, VERSION
from dbops.specs import naming
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"


def record_as_older_operator(kube_client: Any, namespace: str, name: str, old_revision: str,
                             files: dict[str, str]) -> None:
    """What an older release left: the finished status keyed by its revision hash, and its source snapshot."""
    core = client.CoreV1Api(kube_client)
    current = harness.get_resource(kube_client, namespace, MIGRATION, name) or {}
    snapshot = read_json(core.read_namespaced_config_map(
        naming.child_name(name, "source", current["status"]["sourceHash"]), namespace, _preload_content=False))
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": naming.child_name(name, "source", old_revision),
                     "labels": snapshot["metadata"].get("labels", {}),
                     "ownerReferences": snapshot["metadata"]["ownerReferences"]},
        "data": files})
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "databasemigrations", name, {"status": {"sourceHash": old_revision}},
        _preload_content=False)


def snapshot_files(kube_client: Any, namespace: str, name: str, revision: str) -> dict[str, str]:
    core = client.CoreV1Api(kube_client)
    body = read_json(core.read_namespaced_config_map(naming.child_name(name, "source", revision), namespace,
                                                             _preload_content=False))
    return dict(body.get("data") or {})


def test_finished_migration_is_rekeyed_not_run_again_after_an_upgrade(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, MIGRATION, "schema", migration_spec(NOTES))
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "schema", {"Succeeded", "Failed", "RolledBack"})
    assert body["status"]["phase"] == "Succeeded", body["status"]
    revision = body["status"]["sourceHash"]
    files = snapshot_files(kube_client, namespace, "schema", revision)
    jobs_before = sorted(job["metadata"]["name"] for job in harness.list_jobs(kube_client, namespace))

    # Same generation, same files, another hash (an older release counted every default): re-keyed, not re-run.
    record_as_older_operator(kube_client, namespace, "schema", "0ld0ld0ld0ld0ld0", files)

    def rekeyed() -> dict[str, Any] | None:
        current = harness.get_resource(kube_client, namespace, MIGRATION, "schema") or {}
        return current if (current.get("status") or {}).get("sourceHash") == revision else None

    after = harness.eventually(rekeyed, timeout=120, message="the finished run re-keyed to the current revision")
    assert after["status"]["phase"] == "Succeeded"
    assert after["status"].get("attempts", 1) == body["status"].get("attempts", 1)
    assert sorted(job["metadata"]["name"] for job in harness.list_jobs(kube_client, namespace)) == jobs_before
