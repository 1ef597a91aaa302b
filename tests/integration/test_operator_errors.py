"""Errors by what they are: every admitted-but-wrong spec ends as a condition with a reason, Failed=True and a
Warning Event on the resource (so `kubectl wait` can end), never as a silent retry or a traceback."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.integration import operator_harness as harness
from tests.integration.test_operator_rbac import service_account_kubeconfig

from dbops.api.base import GROUP, VERSION
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)
BACKUP, SCHEDULE, MIGRATION = "DatabaseBackup", "DatabaseBackupSchedule", "DatabaseMigration"
RESTORE = "DatabaseRestore"
DATABASE = {"uriSecretRef": {"name": "db", "key": "uri"}}


def backup_spec(minio: MinioServer, **extra: Any) -> dict[str, Any]:
    return {"database": DATABASE, "storage": harness.s3_storage(minio, "never-written"), **extra}


def create_or_refused(kube_client: Any, namespace: str, kind: str, name: str, spec: dict[str, Any],
                      field: str) -> bool:
    """Create the resource; False when the API server already refuses it, naming the field (also fine)."""
    try:
        harness.create_resource(kube_client, namespace, kind, name, spec)
    except ApiException as error:
        assert error.status == 422 and field in str(error.body), error.body
        return False
    return True


def kubectl_wait(plane: ControlPlane, namespace: str, kind: str, name: str, condition: str) -> None:
    """`kubectl wait --for=condition=…` must end (exit 0) for the resource."""
    plane.kubectl("-n", namespace, "wait", f"--for=condition={condition}", f"{kind.lower()}/{name}",
                  "--timeout=120s")


def assert_failed_visibly(plane: ControlPlane, kube_client: Any, namespace: str, kind: str, name: str,
                          reason: str, *words: str) -> dict[str, Any]:
    """Failed phase, Ready=False and Failed=True with the reason, a Warning Event; `kubectl wait` ends."""
    kubectl_wait(plane, namespace, kind, name, "Failed")
    body = harness.get_resource(kube_client, namespace, kind, name)
    assert body is not None
    status = body["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Failed", status
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == reason, conditions
    assert conditions["Failed"]["status"] == "True" and conditions["Failed"]["reason"] == reason, conditions
    for word in words:
        assert word in conditions["Failed"]["message"], conditions["Failed"]

    def warning() -> bool:
        return any(e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == kind
                   and e["type"] == "Warning" and e["reason"] == reason
                   for e in harness.list_events(kube_client, namespace))

    harness.eventually(warning, timeout=30, message=f"a Warning Event {reason} about {kind} {name}")
    return body


def test_job_fields_the_api_server_would_reject_on_the_job_are_refused_on_the_backup(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, minio_server: MinioServer) -> None:
    """Quantities and selectors a Job would be refused for are refused at admission, naming the field (a Job the
    API server refuses at create time is tested over a quota in test_operator_job_rejected.py)."""
    cases = {
        "bad-memory": ({"resources": {"limits": {"memory": "1GBB"}}}, "memory"),
        "negative-cpu": ({"resources": {"requests": {"cpu": "-1"}}}, "cpu"),
        "bad-selector": ({"nodeSelector": {"bad key!": "x"}}, "nodeSelector"),
    }
    for name, (template, field) in cases.items():
        created = create_or_refused(kube_client, namespace, BACKUP, name,
                                    backup_spec(minio_server, jobTemplate=template), field)
        assert not created, f"{name}: admitted, the Job would be refused later"


def test_cron_fields_the_api_server_would_reject_on_the_cron_job_are_refused_on_the_schedule(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, minio_server: MinioServer) -> None:
    """Unknown zones and out-of-range cron fields are refused at admission, naming the field (a CronJob refused
    at create time, and its recovery once fixed, is tested in test_operator_job_rejected.py)."""
    template = {"spec": backup_spec(minio_server)}
    cases = {"mars": ({"schedule": "0 2 * * *", "timeZone": "Mars/Base"}, "timeZone"),
             "lower-case-zone": ({"schedule": "0 2 * * *", "timeZone": "europe/berlin"}, "timeZone"),
             "minute-61": ({"schedule": "61 * * * *"}, "schedule"),
             "all-99": ({"schedule": "99 99 99 99 99"}, "schedule")}
    for name, (fields, field) in cases.items():
        created = create_or_refused(kube_client, namespace, SCHEDULE, name, {**fields, "backupTemplate": template},
                                    field)
        assert not created, f"{name}: admitted, the CronJob would be refused later"


def test_a_migration_window_in_an_unknown_time_zone_fails_with_invalid_spec_not_a_traceback(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": "postgresql://app@127.0.0.1:1/app"})
    spec = {"database": DATABASE, "baselineVersion": "0000",
            "source": {"inline": [{"version": "0001", "name": "t", "up": "CREATE TABLE t (id int);"}]},
            "window": {"schedule": "0 2 * * *", "duration": "2h", "timeZone": "Mars/Base"}}
    if create_or_refused(kube_client, namespace, MIGRATION, "mars", spec, "timeZone"):
        assert_failed_visibly(installed_crds, kube_client, namespace, MIGRATION, "mars", "InvalidSpec", "Mars/Base")
        assert harness.list_jobs(kube_client, namespace) == []
    assert operator.alive() and "Traceback" not in operator.logs()
    assert "ZoneInfoNotFoundError" not in operator.logs()


def test_a_schedule_or_window_that_never_fires_fails_with_invalid_spec_naming_the_field(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str,
        minio_server: MinioServer) -> None:
    # A range is not decided at admission ("0 0 31 2 *" is refused there); croniter finds no date for it.
    harness.create_secret(kube_client, namespace, "db", {"uri": "postgresql://app@127.0.0.1:1/app"})
    never = "0 3 30-31 2 *"
    harness.create_resource(kube_client, namespace, SCHEDULE, "feb-30",
                            {"schedule": never, "backupTemplate": {"spec": backup_spec(minio_server)}})
    harness.create_resource(kube_client, namespace, MIGRATION, "feb-30", {
        "database": DATABASE, "baselineVersion": "0000",
        "source": {"inline": [{"version": "0001", "name": "t", "up": "CREATE TABLE t (id int);"}]},
        "window": {"schedule": never, "duration": "2h"}})
    assert_failed_visibly(installed_crds, kube_client, namespace, SCHEDULE, "feb-30", "InvalidSpec",
                          f"schedule '{never}' never fires")
    assert_failed_visibly(installed_crds, kube_client, namespace, MIGRATION, "feb-30", "InvalidSpec",
                          f"window.schedule '{never}' never fires")
    assert harness.list_jobs(kube_client, namespace) == []
    assert client.BatchV1Api(kube_client).list_namespaced_cron_job(namespace).items == []
    assert operator.alive() and "Traceback" not in operator.logs()
    assert "CroniterBadDateError" not in operator.logs()


def test_a_confirmation_other_than_the_database_in_the_uri_secret_fails_before_any_job(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str,
        minio_server: MinioServer) -> None:
    # Admission cannot see the database a uriSecretRef names: the operator reads it before any Job or safety backup.
    harness.create_secret(kube_client, namespace, "target", {"uri": "postgresql://app:canary-pw@127.0.0.1:1/mentorhub"})
    target = {"database": {"uriSecretRef": {"name": "target", "key": "uri"}}}
    harness.create_resource(kube_client, namespace, "DatabaseRestore", "wrong-db", {
        "source": {"storage": harness.s3_storage(minio_server, "anything"), "path": "prod/app/b"},
        "target": target, "clean": True, "confirmOverwrite": "mentorhub-staging",
        "safetyBackup": {"enabled": True, "storage": harness.s3_storage(minio_server, "safety")}})
    body = assert_failed_visibly(installed_crds, kube_client, namespace, "DatabaseRestore", "wrong-db", "InvalidSpec",
                                 "confirmOverwrite 'mentorhub-staging'", "'mentorhub'",
                                 "target.database.uriSecretRef")
    assert "canary-pw" not in json.dumps(body)
    assert harness.list_jobs(kube_client, namespace) == []
    assert not [b for b in client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "databasebackups")["items"]], "no safety backup before the check"
    assert operator.alive() and "Traceback" not in operator.logs() and "canary-pw" not in operator.logs()


def without_job_creation(role: dict[str, Any]) -> None:
    """Take `create` on Jobs away from the operator's ClusterRole."""
    for rule in role["rules"]:
        if "jobs" in rule.get("resources", []) and "batch" in rule.get("apiGroups", []):
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != "create"]


def test_a_forbidden_job_creation_is_shown_on_the_backup(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        minio_server: MinioServer) -> None:
    kubeconfig = service_account_kubeconfig(installed_crds, kube_client, namespace, edit_role=without_job_creation)
    harness.create_secret(kube_client, namespace, "db", {"uri": "postgresql://app@127.0.0.1:1/app"})
    try:
        with harness.running_operator(installed_crds, namespace, kubeconfig=kubeconfig) as operator:
            harness.create_resource(kube_client, namespace, BACKUP, "forbidden", backup_spec(minio_server))
            body = assert_failed_visibly(installed_crds, kube_client, namespace, BACKUP, "forbidden", "Forbidden",
                                         "may not create Job")
            print(json.dumps(body["status"]["conditions"], indent=1))
            assert operator.alive()
    finally:
        kubeconfig.unlink(missing_ok=True)
        rbac_api = client.RbacAuthorizationV1Api(kube_client)
        rbac_api.delete_cluster_role_binding(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-operator-{namespace}", _preload_content=False)


def test_a_missing_secret_shows_at_once_and_fails_the_backup_after_the_stall_bound(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        minio_server: MinioServer) -> None:
    with harness.running_operator(installed_crds, namespace, "--stall-seconds", "20") as operator:
        harness.create_resource(kube_client, namespace, BACKUP, "no-secret", backup_spec(minio_server))

        def shown() -> bool:
            body = harness.get_resource(kube_client, namespace, BACKUP, "no-secret") or {}
            status = body.get("status") or {}
            return status.get("phase") == "Pending" and any(
                c["reason"] == "MissingReference" for c in status.get("conditions") or [])

        harness.eventually(shown, timeout=60, message="a MissingReference condition while still Pending")
        assert_failed_visibly(installed_crds, kube_client, namespace, BACKUP, "no-secret", "MissingReference",
                              "Secret db not found")
        assert harness.list_jobs(kube_client, namespace) == []
        assert operator.alive()


def test_a_lasting_transient_error_shows_on_the_backup_and_it_recovers(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str,
        minio_server: MinioServer) -> None:
    """A Job admission webhook that is down makes every Job create fail with HTTP 500: retried, shown on the
    resource once it lasts longer than --stall-seconds (never Failed), and gone once the webhook is removed."""
    harness.create_secret(kube_client, namespace, "db", {"uri": "postgresql://app@127.0.0.1:1/app"})
    webhooks = client.AdmissionregistrationV1Api(kube_client)
    name = f"down-{namespace}"
    webhooks.create_validating_webhook_configuration({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "jobs.down.dbops.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 2,
            "clientConfig": {"url": "https://127.0.0.1:1/validate"},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "rules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["jobs"]}],
        }],
    }, _preload_content=False)
    try:
        with harness.running_operator(installed_crds, namespace, "--stall-seconds", "15") as operator:
            harness.create_resource(kube_client, namespace, BACKUP, "flaky", backup_spec(minio_server))

            def shown() -> dict[str, Any] | None:
                body = harness.get_resource(kube_client, namespace, BACKUP, "flaky") or {}
                status = body.get("status") or {}
                ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
                return body if ready.get("reason") == "ApiUnavailable" and "retrying for" in ready["message"] else None

            body = harness.eventually(shown, timeout=120, message="the lasting HTTP 500 shown on the backup")
            assert body["status"]["phase"] != "Failed"
            assert "Failed" not in {c["type"] for c in body["status"]["conditions"]}
            assert "webhook" in json.dumps(body["status"]["conditions"])
            assert any(e["reason"] == "ApiUnavailable" and e["type"] == "Warning"
                       for e in harness.list_events(kube_client, namespace))
            webhooks.delete_validating_webhook_configuration(name, _preload_content=False)
            harness.eventually(lambda: harness.list_jobs(kube_client, namespace), timeout=120,
                               message="the backup Job once the webhook is gone")
            body = harness.get_resource(kube_client, namespace, BACKUP, "flaky")
            assert body is not None and body["status"]["phase"] == "Running"
            assert operator.alive()
    finally:
        with contextlib.suppress(ApiException):
            webhooks.delete_validating_webhook_configuration(name, _preload_content=False)


def test_wrong_references_credentials_hosts_and_buckets_each_show_a_reason_and_a_warning_event(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, s3_secret: str, minio_server: MinioServer,
        postgres: PostgresServer, app_database: str, bucket: str) -> None:
    """Issue 12: a missing Secret or key, wrong credentials (database, S3), an unknown host, a missing bucket, a
    missing ConfigMap and a missing backupRef: each ends Failed with a condition naming the thing at fault and a
    Warning Event."""
    secrets = {"db-nokey": {"url": postgres.uri(app_database)},
               "db-badpw": {"uri": postgres.uri(app_database, password="not-the-password")},
               "db-nohost": {"uri": f"postgresql://app:pw@db-{namespace}.invalid:5432/app"},
               "db-good": {"uri": postgres.uri(app_database)},
               "s3-badkey": {"AWS_ACCESS_KEY_ID": minio_server.access_key,
                             "AWS_SECRET_ACCESS_KEY": "not-the-secret-key"}}
    for secret, data in secrets.items():
        harness.create_secret(kube_client, namespace, secret, data)

    def database(secret: str) -> dict[str, Any]:
        return {"uriSecretRef": {"name": secret, "key": "uri"}}

    storage = harness.s3_storage(minio_server, bucket)

    def storage_with(credentials: str) -> dict[str, Any]:
        return {"s3": {**storage["s3"], "credentialsSecretRef": {"name": credentials}}}

    cases: dict[str, tuple[str, dict[str, Any], set[str], str]] = {
        # name: kind, spec, accepted reasons, a word the Failed message must contain
        "no-key": (BACKUP, {"database": database("db-nokey"), "storage": storage}, {"MissingReference"},
                   "has no key uri"),
        "bad-password": (BACKUP, {"database": database("db-badpw"), "storage": storage}, {"AuthenticationFailed"},
                         "password authentication failed"),
        "no-host": (BACKUP, {"database": database("db-nohost"), "storage": storage},
                    # A name that does not resolve may resolve later (DNS): transient, retried by the Job's
                    # backoffLimit, then Failed naming the host.
                    {"TransientFailure"}, f"db-{namespace}.invalid"),
        "no-bucket": (BACKUP, {"database": database("db-good"),
                               "storage": harness.s3_storage(minio_server, f"no-bucket-{namespace}")},
                      {"NotFound"}, f"S3 bucket 'no-bucket-{namespace}' does not exist"),
        "no-s3-secret": (BACKUP, {"database": database("db-good"), "storage": storage_with("no-such-s3")},
                         {"MissingReference"}, "Secret no-such-s3 not found"),
        "bad-s3-key": (BACKUP, {"database": database("db-good"), "storage": storage_with("s3-badkey")},
                       {"AuthenticationFailed"}, "access denied"),
        "no-configmap": (MIGRATION, {"database": database("db-good"), "baselineVersion": "0000",
                                     "source": {"configMapRef": {"name": "no-such-migrations"}}},
                         {"MissingReference"}, "ConfigMap no-such-migrations not found"),
        "no-backup": (RESTORE, {"source": {"backupRef": {"name": "no-such-backup"}},
                                "target": {"database": database("db-good")}, "confirmOverwrite": app_database},
                      {"MissingReference"}, "no-such-backup"),
    }
    with harness.running_operator(installed_crds, namespace, "--stall-seconds", "20") as operator:
        for name, (kind, spec, _, _) in cases.items():
            harness.create_resource(kube_client, namespace, kind, name, spec)
        problems = {}
        for name, (kind, _, reasons, word) in cases.items():
            body = harness.wait_for_phase(kube_client, namespace, kind, name, {"Failed", "Succeeded"}, timeout=300)
            kubectl_wait(installed_crds, namespace, kind, name, "Failed")
            conditions = {c["type"]: c for c in body["status"]["conditions"]}
            failed, ready = conditions.get("Failed", {}), conditions.get("Ready", {})
            reason = failed.get("reason")
            if reason not in reasons or ready.get("reason") != reason or word not in failed.get("message", ""):
                problems[name] = conditions
                continue
            # The Event's reason is the resource's own (BackupFailed) or the condition's; either way it names
            # the condition's reason and the thing at fault.
            warnings = [e for e in harness.list_events(kube_client, namespace)
                        if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == kind
                        and e["type"] == "Warning" and reason in (e["reason"], e["message"].split(":")[0])
                        and word in e["message"]]
            if not warnings:
                problems[name] = {"no Warning Event naming": [reason, word]}
        assert problems == {}, json.dumps(problems, indent=1)
        events = json.dumps(harness.list_events(kube_client, namespace))
        assert "not-the-password" not in events and "not-the-secret-key" not in events
        assert operator.alive() and "Traceback" not in operator.logs()
