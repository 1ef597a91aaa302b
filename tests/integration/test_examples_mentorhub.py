"""manifests/examples as written, against MentorHub as production has it (tables, data, no dbops history)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops_testbed import mentorhub
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
FINAL = {"Succeeded", "Failed", "RolledBack"}


def apply(plane: ControlPlane, namespace: str, documents: list[dict[str, Any]]) -> None:
    plane.kubectl("-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))


def pick(documents: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] in kinds]


def test_examples_back_up_migrate_and_restore_an_existing_mentorhub(
        installed_crds: ControlPlane, operator: harness.RunningOperator, kube_client: Any, namespace: str,
        postgres: PostgresServer, minio_server: MinioServer, bucket: str) -> None:
    database = mentorhub.create_database(postgres, f"mentorhub_{uuid.uuid4().hex[:8]}")
    documents = mentorhub.local_examples(postgres, database, minio_server, bucket)
    apply(installed_crds, namespace, pick(documents, "Secret", "ConfigMap", "DatabaseBackup"))
    backup = harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "mentorhub-before-release", FINAL)
    assert backup["status"]["phase"] == "Succeeded", backup["status"]

    # The migration: adopted at the baseline (not BaselineRequired), waits for approval of its plan, then runs.
    apply(installed_crds, namespace, pick(documents, "DatabaseMigration"))
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "mentorhub-schema",
                                  {"AwaitingApproval", *FINAL})
    assert body["status"]["phase"] == "AwaitingApproval", body["status"]
    assert [v.split("_")[0] for v in body["status"]["plan"]["pending"]] == ["0002"], body["status"]["plan"]
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "databasemigrations", "mentorhub-schema",
        {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": body["status"]["plan"]["hash"]}}},
        _preload_content=False)
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "mentorhub-schema", FINAL)
    assert body["status"]["phase"] == "Succeeded", yaml.safe_dump(body["status"])
    assert postgres.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'mentorship_bookings'"
                         " AND column_name = 'reminder_sent_at'", database).strip() == "1"
    history = postgres.psql("SELECT version || ':' || kind FROM public.dbops_migrations ORDER BY version", database)
    assert "baseline" in history and "0002" in history, history
    pre_backup = harness.get_resource(kube_client, namespace, "DatabaseBackup", body["status"]["backupName"])
    assert pre_backup and pre_backup["status"]["phase"] == "Succeeded", "the pre-migration backup"

    # The runbook's partial rollback: bookings lost after the backup come back from it.
    bookings = postgres.psql("SELECT count(*) FROM mentorship_bookings", database).strip()
    postgres.psql("DELETE FROM mentorship_bookings WHERE status = 'pending'", database)
    apply(installed_crds, namespace, pick(documents, "DatabaseRestore"))
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseRestore", "mentorhub-restore-bookings", FINAL)
    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert postgres.psql("SELECT count(*) FROM mentorship_bookings", database).strip() == bookings


def test_without_the_baseline_an_existing_mentorhub_is_refused_by_name(
        installed_crds: ControlPlane, operator: harness.RunningOperator, kube_client: Any, namespace: str,
        postgres: PostgresServer, minio_server: MinioServer, bucket: str) -> None:
    # Why the example carries baselineVersion: dbops never guesses what an unrecorded database already has.
    database = mentorhub.create_database(postgres, f"mentorhub_{uuid.uuid4().hex[:8]}", bookings=100)
    documents = mentorhub.local_examples(postgres, database, minio_server, bucket)
    migration = pick(documents, "DatabaseMigration")[0]
    migration["spec"].pop("baselineVersion")
    migration["spec"]["approval"] = {"mode": "Automatic"}
    apply(installed_crds, namespace, [*pick(documents, "Secret", "ConfigMap"), migration])
    body = harness.wait_for_phase(kube_client, namespace, "DatabaseMigration", "mentorhub-schema", FINAL)
    assert body["status"]["phase"] == "Failed"
    assert "BaselineRequired" in yaml.safe_dump(body["status"])
