"""The CRDs in a real API server: valid examples are accepted and listed, invalid manifests rejected by name."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tests.integration.admission import Admission

from dbops import errors
from dbops.api.cron import cron_problem
from dbops.api.migration import DatabaseMigrationSpec
from dbops.cli.main import check_arguments
from dbops.specs import jobs
from dbops_testbed.controlplane import ControlPlane

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def _example(kind_file: str) -> dict[str, Any]:
    # Example files may carry what the resource needs beside it (the migration's ConfigMap).
    document: dict[str, Any] = next(d for d in yaml.safe_load_all((EXAMPLES / kind_file).read_text())
                                    if d and d["apiVersion"].startswith("dbops.io/"))
    return document


def _apply(plane: ControlPlane, namespace: str, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    binary = str(plane.bin_dir / "kubectl") if plane.bin_dir else "kubectl"
    return subprocess.run(
        [binary, "--kubeconfig", str(plane.kubeconfig), "-n", namespace, "apply", "--server-side",
         "--dry-run=server", "-f", "-"],
        input=yaml.safe_dump(document), capture_output=True, text=True, timeout=60,
    )


def test_valid_examples_are_accepted_and_listed_by_category(installed_crds: ControlPlane, namespace: str) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        installed_crds.kubectl("-n", namespace, "apply", "--server-side", "-f", str(path))
    listing = installed_crds.kubectl("-n", namespace, "get", "dbops")
    for name in ("mentorhub-before-release", "mentorhub-nightly", "mentorhub-schema", "mentorhub-restore-bookings"):
        assert name in listing
    header = installed_crds.kubectl("-n", namespace, "get", "dbb").splitlines()[0].split()
    assert header[:4] == ["NAME", "PHASE", "DATABASE", "SIZE"]
    short = installed_crds.kubectl("-n", namespace, "get", "dbm,dbr,dbbs", "-o", "name").split()
    assert len(short) == 3


def test_server_applies_schema_defaults(installed_crds: ControlPlane, namespace: str) -> None:
    installed_crds.kubectl("-n", namespace, "apply", "--server-side", "-f", str(EXAMPLES / "databaserestore.yaml"))
    stored = yaml.safe_load(installed_crds.kubectl("-n", namespace, "get", "dbr", "mentorhub-restore-bookings", "-o", "yaml"))
    assert stored["spec"]["parallelJobs"] == 1
    assert stored["spec"]["verify"]["rowCounts"] is True


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of document with a dotted path set (value None deletes the key)."""
    result = copy.deepcopy(document)
    node = result
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return result


BACKUP = "databasebackup.yaml"
SCHEDULE = "databasebackupschedule.yaml"
MIGRATION = "databasemigration.yaml"
RESTORE = "databaserestore.yaml"
S3 = {"bucket": "b-ok", "credentialsSecretRef": {"name": "s3"}}

# (id, example file, dotted path, value (None deletes), text the rejection must contain)
INVALID = [
    ("backup-format-enum", BACKUP, "spec.format", "tar", "spec.format"),
    ("backup-codec-enum", BACKUP, "spec.compression.codec", "lz4", "spec.compression.codec"),
    ("backup-level-type", BACKUP, "spec.compression.level", "high", "spec.compression.level"),
    ("backup-gzip-level", BACKUP, "spec.compression", {"codec": "gzip", "level": 15}, "gzip levels are 1 to 9"),
    ("backup-negative-parallel", BACKUP, "spec.parallelJobs", -1, "spec.parallelJobs"),
    ("backup-parallel-custom-format", BACKUP, "spec.parallelJobs", 4, "parallelJobs > 1 needs format: directory"),
    ("backup-two-storages", BACKUP, "spec.storage.pvc", {"claimName": "backups"}, "exactly one storage backend"),
    ("backup-no-storage-backend", BACKUP, "spec.storage", {}, "exactly one storage backend"),
    ("backup-missing-storage", BACKUP, "spec.storage", None, "spec.storage"),
    ("backup-missing-database", BACKUP, "spec.database", None, "spec.database"),
    ("backup-database-no-target", BACKUP, "spec.database", {"port": 5432}, "uriSecretRef or both host and name"),
    ("backup-port-range", BACKUP, "spec.database", {"host": "h", "name": "d", "port": 70000}, "spec.database.port"),
    ("backup-sslmode-enum", BACKUP, "spec.database", {"host": "h", "name": "d", "sslMode": "always"}, "spec.database.sslMode"),
    ("backup-user-twice", BACKUP, "spec.database",
     {"host": "h", "name": "d", "user": "u", "userSecretRef": {"name": "s", "key": "u"}}, "at most one of user and userSecretRef"),
    ("backup-bucket-pattern", BACKUP, "spec.storage.s3.bucket", "Not_A_Bucket", "spec.storage.s3.bucket"),
    ("backup-endpoint-credentials", BACKUP, "spec.storage.s3.endpoint", "https://key:secret@minio:9000", "spec.storage.s3.endpoint"),
    ("backup-deletion-policy-enum", BACKUP, "spec.deletionPolicy", "Orphan", "spec.deletionPolicy"),
    ("backup-ttl-pattern", BACKUP, "spec.ttl", "one month", "spec.ttl"),
    ("backup-schema-and-data-only", BACKUP, "spec.scope", {"schemaOnly": True, "dataOnly": True}, "schemaOnly and dataOnly"),
    ("backup-unknown-field", BACKUP, "spec.passwrd", "hunter2", "passwrd"),
    ("backup-checks-without-restore-test", BACKUP, "spec.verify",
     {"checks": [{"name": "c", "sql": "SELECT 1", "expect": {"rows": 1}}]}, "verify.checks need verify.restoreTest"),
    ("backup-secret-ref-missing-key", BACKUP, "spec.database", {"uriSecretRef": {"name": "db"}}, "spec.database.uriSecretRef.key"),
    ("schedule-bad-cron", SCHEDULE, "spec.schedule", "every night", "spec.schedule"),
    ("schedule-concurrency-enum", SCHEDULE, "spec.concurrencyPolicy", "Queue", "spec.concurrencyPolicy"),
    ("schedule-negative-keep", SCHEDULE, "spec.retention.keepLast", -1, "spec.retention.keepLast"),
    ("schedule-max-age-pattern", SCHEDULE, "spec.retention.maxAge", "30 days", "spec.retention.maxAge"),
    ("schedule-template-two-storages", SCHEDULE, "spec.backupTemplate.spec.storage.pvc", {"claimName": "x"},
     "exactly one storage backend"),
    ("migration-no-source", MIGRATION, "spec.source", {}, "exactly one migration source"),
    ("migration-two-sources", MIGRATION, "spec.source.inline", [{"version": "1", "name": "a", "up": "SELECT 1"}],
     "exactly one migration source"),
    ("migration-version-pattern", MIGRATION, "spec.source",
     {"inline": [{"version": "v1", "name": "a", "up": "SELECT 1"}]}, "spec.source.inline[0].version"),
    ("migration-approval-enum", MIGRATION, "spec.approval.mode", "Later", "spec.approval.mode"),
    ("migration-restore-without-backup", MIGRATION, "spec.backup", {"enabled": False},
     "onFailure: RestoreBackup needs backup.enabled"),
    ("migration-window-duration", MIGRATION, "spec.window.duration", "two hours", "spec.window.duration"),
    ("migration-lock-retries-max", MIGRATION, "spec.timeouts.lockRetries", 1000, "spec.timeouts.lockRetries"),
    ("migration-lock-timeout-postgres-limit", MIGRATION, "spec.timeouts.lockTimeout", "25d",
     "spec.timeouts.lockTimeout: Invalid value: \"25d\": must be at most 24d20h31m23s"),
    ("migration-statement-timeout-postgres-unit", MIGRATION, "spec.timeouts.statementTimeout", "5min",
     "spec.timeouts.statementTimeout"),
    ("migration-check-no-expectation", MIGRATION, "spec.verify.checks", [{"name": "c", "sql": "SELECT 1", "expect": {}}],
     "set at least one of rows, min, max, equals"),
    ("migration-history-table-pattern", MIGRATION, "spec.historyTable", "drop table x;", "spec.historyTable"),
    # Tighter admission (issue 12): what the API server would otherwise refuse only on the child Job/CronJob.
    ("schedule-cron-minute-range", SCHEDULE, "spec.schedule", "61 * * * *", "spec.schedule"),
    ("schedule-cron-every-field-out-of-range", SCHEDULE, "spec.schedule", "99 99 99 99 99", "spec.schedule"),
    ("schedule-cron-day-of-week-7", SCHEDULE, "spec.schedule", "0 2 * * 7", "spec.schedule"),
    ("schedule-cron-quartz-l", SCHEDULE, "spec.schedule", "0 0 L * *", "spec.schedule"),
    ("schedule-cron-backwards-range", SCHEDULE, "spec.schedule", "0 2 * * FRI-MON",
     "spec.schedule: Invalid value: \"0 2 * * FRI-MON\": cron ranges must run from low to high"),
    ("schedule-time-zone-unknown", SCHEDULE, "spec.timeZone", "Mars/Base", "spec.timeZone"),
    ("schedule-time-zone-case", SCHEDULE, "spec.timeZone", "europe/berlin", "must be an IANA time zone name"),
    ("migration-window-time-zone", MIGRATION, "spec.window.timeZone", "Mars/Base", "spec.window.timeZone"),
    ("migration-window-cron-range", MIGRATION, "spec.window.schedule", "0 25 * * *", "spec.window.schedule"),
    ("schedule-cron-never-fires", SCHEDULE, "spec.schedule", "0 0 30 2 *",
     "spec.schedule: Invalid value: \"0 0 30 2 *\": the schedule never fires"),
    ("migration-window-never-opens", MIGRATION, "spec.window.schedule", "0 3 31 apr,JUN ?",
     "spec.window.schedule: Invalid value: \"0 3 31 apr,JUN ?\": the schedule never fires"),
    ("backup-memory-quantity", BACKUP, "spec.jobTemplate", {"resources": {"limits": {"memory": "1GBB"}}},
     "spec.jobTemplate.resources.limits"),
    ("backup-negative-cpu", BACKUP, "spec.jobTemplate", {"resources": {"requests": {"cpu": "-1"}}},
     "spec.jobTemplate.resources.requests"),
    ("backup-unknown-resource", BACKUP, "spec.jobTemplate", {"resources": {"requests": {"gpu": "1"}}},
     "resources are cpu, memory, ephemeral-storage"),
    ("backup-request-above-limit", BACKUP, "spec.jobTemplate",
     {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}, "a request must not exceed its limit"),
    ("backup-node-selector-key", BACKUP, "spec.jobTemplate", {"nodeSelector": {"bad key!": "x"}},
     "spec.jobTemplate.nodeSelector"),
    ("backup-pod-label-value", BACKUP, "spec.jobTemplate", {"podLabels": {"team": "not a value"}},
     "spec.jobTemplate.podLabels"),
    ("backup-toleration-exists-value", BACKUP, "spec.jobTemplate",
     {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "spec.jobTemplate.tolerations[0].value"),
    ("backup-toleration-seconds-effect", BACKUP, "spec.jobTemplate",
     {"tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]}, "tolerationSeconds needs effect"),
    ("migration-duplicate-inline-versions", MIGRATION, "spec.source",
     {"inline": [{"version": "1", "name": "a", "up": "SELECT 1"}, {"version": "0001", "name": "b", "up": "SELECT 2"}]},
     "inline migration versions must be unique"),
    ("migration-env-literal-password", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "env": [{"name": "PGPASSWORD", "value": "hunter2"}]}},
     "spec.source.command.env[0].value"),
    ("migration-env-url-with-password", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"],
                  "env": [{"name": "DATABASE_URL", "value": "postgres://app:hunter2@db/app"}]}},
     "must not be a literal value: use valueFrom.secretKeyRef"),
    ("migration-plan-command-disabled", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "plan": "Disabled", "planCommand": ["migrate", "-n"]}},
     "spec.source.command.planCommand"),
    ("migration-plan-mode", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "plan": "Sometimes"}}, "spec.source.command.plan"),
    ("migration-env-value-and-value-from", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"],
                  "env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}},
     "set value or valueFrom, not both"),
    ("backup-secret-key-dot", BACKUP, "spec.database", {"uriSecretRef": {"name": "db", "key": "."}},
     "spec.database.uriSecretRef.key"),
    ("backup-secret-key-dot-dot", BACKUP, "spec.database", {"uriSecretRef": {"name": "db", "key": "..uri"}},
     "spec.database.uriSecretRef.key"),
    ("backup-secret-name-double-dot", BACKUP, "spec.database", {"uriSecretRef": {"name": "db..prod", "key": "uri"}},
     "spec.database.uriSecretRef.name"),
    ("backup-null-ssl-mode", BACKUP, "spec.database", {"host": "h", "name": "d", "sslMode": None},
     "spec.database.sslMode"),
    ("migration-env-incomplete-secret-ref", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"],
                  "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app"}}}]}},
     "spec.source.command.env[0].valueFrom.secretKeyRef.key"),
    ("migration-env-two-sources", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "env": [{"name": "TOKEN", "valueFrom": {
         "secretKeyRef": {"name": "app", "key": "t"}, "fieldRef": {"fieldPath": "metadata.name"}}}]}},
     "set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef"),
    ("migration-env-optional-type", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "env": [{"name": "MODE", "valueFrom": {
         "configMapKeyRef": {"name": "cfg", "key": "mode", "optional": "0002"}}}]}},
     "spec.source.command.env[0].valueFrom.configMapKeyRef.optional"),
    ("migration-env-field-path", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "env": [{"name": "NODE", "valueFrom": {
         "fieldRef": {"fieldPath": "spec.containers"}}}]}},
     "spec.source.command.env[0].valueFrom.fieldRef.fieldPath"),
    ("migration-inline-gap", MIGRATION, "spec.source",
     {"inline": [{"version": "1", "name": "a", "up": "SELECT 1"}, {"version": "3", "name": "b", "up": "SELECT 1"}]},
     "inline migration versions must be consecutive"),
    ("migration-inline-name-underscore", MIGRATION, "spec.source",
     {"inline": [{"version": "1", "name": "_a", "up": "SELECT 1"}]}, "spec.source.inline[0].name"),
    ("migration-inline-comment-only", MIGRATION, "spec.source",
     {"inline": [{"version": "1", "name": "a", "up": "-- nothing yet\n/* later */ ;"}]},
     "spec.source.inline[0].up: Invalid value"),
    ("migration-env-name", MIGRATION, "spec.source",
     {"command": {"image": "app:1", "command": ["migrate"], "env": [{"name": "A=B", "value": "x"}]}},
     "spec.source.command.env[0].name"),
    ("restore-no-source", RESTORE, "spec.source", {}, "exactly one of backupRef or storage"),
    ("restore-two-sources", RESTORE, "spec.source.storage", {"s3": S3}, "exactly one of backupRef or storage"),
    ("restore-storage-without-path", RESTORE, "spec.source", {"storage": {"s3": S3}}, "storage needs path"),
    ("restore-overwrite-unconfirmed", RESTORE, "spec.confirmOverwrite", None, "set confirmOverwrite to the target database name"),
    ("restore-overwrite-wrong-name", RESTORE, "spec.confirmOverwrite", "other", "set confirmOverwrite to the target database name"),
    ("restore-full-overwrite-wrong-name", RESTORE, "spec", {
        "source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}},
        "confirmOverwrite": "yes"}, "spec.confirmOverwrite: Invalid value: confirmOverwrite must equal"),
    ("restore-uri-overwrite-wrong-name", RESTORE, "spec", {
        "source": {"backupRef": {"name": "b"}},
        "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}, "name": "app"}},
        "mode": "Tables", "tables": ["users"], "confirmOverwrite": "yes"}, "confirmOverwrite must equal"),
    ("restore-mode-enum", RESTORE, "spec.mode", "Partial", "spec.mode"),
    ("restore-tables-without-mode", RESTORE, "spec.mode", "Full", "tables must be listed with mode: Tables"),
    ("restore-tables-mode-empty", RESTORE, "spec.tables", [], "tables must be listed with mode: Tables"),
    ("restore-parallel-negative", RESTORE, "spec.parallelJobs", 0, "spec.parallelJobs"),
    ("restore-safety-without-storage", RESTORE, "spec.safetyBackup", {"enabled": True}, "safety backup needs storage"),
    ("restore-recreate-with-tables", RESTORE, "spec.recreate", True, "recreate is only used with mode: Full"),
    ("restore-tables-replace-unconfirmed", RESTORE, "spec",
     {"source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}}, "mode": "Tables",
      "tables": ["t"]}, "a Tables restore with strategy Replace or onConflict Overwrite changes existing rows"),
    ("restore-tables-overwrite-unconfirmed", RESTORE, "spec",
     {"source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}}, "mode": "Tables",
      "tables": ["t"], "strategy": "Merge", "onConflict": "Overwrite", "confirmOverwrite": "other"},
     "a Tables restore with strategy Replace or onConflict Overwrite changes existing rows"),
    ("restore-strategy-enum", RESTORE, "spec.strategy", "Upsert", "spec.strategy"),
    ("restore-strategy-without-tables", RESTORE, "spec",
     {"source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}},
      "strategy": "Merge"}, "strategy is only used with mode: Tables"),
    ("restore-overwrite-without-merge", RESTORE, "spec",
     {"source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}}, "mode": "Tables",
      "tables": ["t"], "strategy": "MissingOnly", "onConflict": "Overwrite", "confirmOverwrite": "app"},
     "onConflict: Overwrite is only used with strategy: Merge"),
    ("restore-recreate-unconfirmed", RESTORE, "spec",
     {"source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}}, "recreate": True},
     "set confirmOverwrite to the target database name"),
]


@pytest.mark.parametrize(("example", "path", "value", "expected"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(
    installed_crds: ControlPlane, namespace: str, example: str, path: str, value: Any, expected: str
) -> None:
    document = _set(_example(example), path, value)
    outcome = _apply(installed_crds, namespace, document)
    assert outcome.returncode != 0, f"accepted: {yaml.safe_dump(document)}"
    assert expected in outcome.stderr, outcome.stderr


def test_at_least_25_invalid_cases() -> None:
    assert len(INVALID) >= 25


def test_command_env_value_from_survives_admission(installed_crds: ControlPlane, namespace: str) -> None:
    value_from = {"secretKeyRef": {"name": "app", "key": "token", "optional": True}}
    document = _set(_example(MIGRATION), "spec.source", {"command": {
        "image": "registry.example/app:1", "command": ["python", "manage.py", "migrate"],
        "env": [{"name": "TOKEN", "valueFrom": value_from}]}})
    document = _set(document, "spec.approval", {"mode": "Automatic"})
    installed_crds.kubectl("-n", namespace, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(document))
    stored = yaml.safe_load(installed_crds.kubectl("-n", namespace, "get", "dbm", "mentorhub-schema", "-o", "yaml"))
    assert stored["spec"]["source"]["command"]["env"][0]["valueFrom"] == value_from


DURATIONS = ["0", "0s", "5s", "5m", "1h30m", "1500ms", "2w", "24d20h31m23s647ms", "24d20h31m23s648ms", "25d",
             "3w4d", "0000000000000000000005s", "99999999999999999999w", "5min", "1.5s", "5", "-1s", "5 s", "",
             "1h 30m", "1m1m", "10000000000ms", "2147483647ms", "2147483648ms"]


@pytest.mark.parametrize("value", DURATIONS)
def test_api_server_model_and_runner_agree_on_a_timeout(installed_crds: ControlPlane, kube_client: Any,
                                                         namespace: str, value: str) -> None:
    """Differential, against the real API server: a timeout is admitted exactly when the runner flag takes it."""
    spec = _set(_example(MIGRATION), "spec.timeouts", {"lockTimeout": value, "statementTimeout": value})["spec"]
    admitted, message = Admission(kube_client, namespace).verdict("DatabaseMigration", spec)
    try:
        model = DatabaseMigrationSpec.model_validate(spec)
        valid = True
    except ValidationError:
        valid = False
    try:
        check_arguments(["migrate", "apply", "--source", "/m", "--lock-timeout", value, "--statement-timeout", value])
        accepted = True
    except errors.InvalidSpecError:
        accepted = False
    assert (admitted, valid) == (accepted, accepted), message
    if admitted:
        check_arguments(jobs.migration_args(model, "apply"))
    else:
        assert "spec.timeouts.lockTimeout" in message


def test_merge_table_restore_needs_no_confirmation(installed_crds: ControlPlane, namespace: str) -> None:
    """Merge (keep differing rows) and MissingOnly change no existing row: admitted without confirmOverwrite."""
    for strategy in ("Merge", "MissingOnly"):
        document = _set(_example(RESTORE), "spec", {
            "source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "h", "name": "app"}},
            "mode": "Tables", "tables": ["payment"], "strategy": strategy})
        applied = _apply(installed_crds, namespace, document)
        assert applied.returncode == 0, applied.stderr


CRONS = ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 FEB ?", "5 4 31 02 *", "0\t0  31 feb,Apr *",
         "0 0 29 2 *", "0 0 31 2 1", "0 0 31 2,3 *", "0 0 30 feb,apr *", "0 0 31 */2 *", "0 0 31 2-3 *", "@monthly",
         "0 0 1,31 2 *", "0 0 31 2 */2", "0 0 31 2 */1", "0 0 30 2 ?/1", "0 0 30 2 */01"]


@pytest.mark.parametrize("schedule", CRONS)
def test_api_server_and_model_agree_on_a_schedule_that_never_fires(installed_crds: ControlPlane, kube_client: Any,
                                                                    namespace: str, schedule: str) -> None:
    """Differential, against the real API server: CRON_FIRES_RULE and never_fires refuse the same schedules."""
    spec = _set(_example(SCHEDULE), "spec.schedule", schedule)["spec"]
    admitted, message = Admission(kube_client, namespace).verdict("DatabaseBackupSchedule", spec)
    assert admitted is (cron_problem(schedule) is None), message
    if not admitted:
        assert "spec.schedule" in message and "never fires" in message, message
