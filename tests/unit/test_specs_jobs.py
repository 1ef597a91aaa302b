"""Job builders: golden manifests, restricted security, credentials only as secretKeyRef."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.unit.golden import assert_matches_golden

from dbops.api.backup import DatabaseBackupSpec
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.restore import DatabaseRestoreSpec
from dbops.api.roles import JobRole
from dbops.specs import jobs
from dbops.specs.owner import Owner

OWNER = Owner(kind="DatabaseBackup", namespace="prod", name="mentorhub-nightly", uid="0b8c-uid", generation=1)
IMAGE = "ghcr.io/dbops/dbops:0.1.0"

S3_BACKUP = {
    "database": {"host": "pg.prod.svc", "port": 5432, "name": "mentorhub", "user": "backup",
                 "passwordSecretRef": {"name": "db", "key": "password"}, "sslMode": "require"},
    "storage": {"s3": {"bucket": "backups", "prefix": "prod/", "endpoint": "http://minio:9000",
                       "region": "eu-west-1", "forcePathStyle": True, "credentialsSecretRef": {"name": "s3"}}},
    "scope": {"excludeTableData": ["audit_log"]},
}
PVC_BACKUP = {
    "database": {"uriSecretRef": {"name": "cnpg-app", "key": "uri"}},
    "storage": {"pvc": {"claimName": "backups", "path": "mentorhub/"}},
    "format": "directory", "parallelJobs": 4, "compression": {"codec": "gzip", "level": 6},
    "verify": {"restoreTest": True, "checks": [{"name": "users", "sql": "select 1", "expect": {"rows": 1}}]},
    "jobTemplate": {
        "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
        "nodeSelector": {"pool": "batch"}, "tolerations": [{"key": "batch", "operator": "Exists"}],
        "activeDeadlineSeconds": 3600, "backoffLimit": 3, "ttlSecondsAfterFinished": 86400,
        "podLabels": {"team": "db"}, "podAnnotations": {"note": "x"},
    },
}


def all_jobs() -> dict[str, dict[str, Any]]:
    s3 = DatabaseBackupSpec.model_validate(S3_BACKUP)
    pvc = DatabaseBackupSpec.model_validate(PVC_BACKUP)
    restore = DatabaseRestoreSpec.model_validate({
        "source": {"backupRef": {"name": "mentorhub-nightly"}},
        "target": {"database": {"host": "pg", "name": "restored", "userSecretRef": {"name": "db", "key": "user"},
                                "passwordSecretRef": {"name": "db", "key": "password"}}, "create": True},
        "mode": "Tables", "tables": ["public.users", "public.bookings"], "clean": True,
        "confirmOverwrite": "restored", "terminateConnections": True,
    })
    rollback = DatabaseRestoreSpec.model_validate({
        "source": {"backupRef": {"name": "pre-migration"}},
        "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}},
        "recreate": True, "confirmOverwrite": "mentorhub", "terminateConnections": True,
        "verify": {"checks": [{"name": "no-orphans", "sql": "select 1 from bookings where user_id is null",
                               "expect": {"rows": 0}}]},
    })
    migration = DatabaseMigrationSpec.model_validate({
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "source": {"configMapRef": {"name": "migrations"}},
        "timeouts": {"statementTimeout": "10m"},
        "verify": {"checks": [{"name": "orphans", "sql": "select 1", "expect": {"rows": 0}}]},
    })
    restore_owner = Owner("DatabaseRestore", "prod", "restore-users", "r-uid", 1)
    migration_owner = Owner("DatabaseMigration", "prod", "schema", "m-uid", 2)
    files = ["0001_a.up.sql", "0001_a.down.sql"]
    return {
        "backup-s3": jobs.build_backup_job(OWNER, s3, image=IMAGE),
        "backup-pvc-template": jobs.build_backup_job(OWNER, pvc, image=IMAGE),
        "verify-s3": jobs.build_verify_job(OWNER, s3, "s3://backups/prod/prod/mentorhub/mentorhub-nightly", image=IMAGE),
        "verify-pvc-restore-test": jobs.build_verify_job(OWNER, pvc, "/backups/mentorhub/x", image=IMAGE),
        "delete-artifact-s3": jobs.build_delete_artifact_job(OWNER, s3, "s3://backups/prod/p/db/n", image=IMAGE),
        "restore-tables": jobs.build_restore_job(restore_owner, restore, s3.storage, "s3://backups/prod/p/db/n",
                                                 image=IMAGE),
        "restore-full-recreate": jobs.build_restore_job(restore_owner, rollback, s3.storage,
                                                        "s3://backups/prod/p/db/n", image=IMAGE),
        "migration-plan": jobs.build_migration_job(migration_owner, migration, JobRole.PLAN, source_config_map="schema-src",
                                                   migration_files=files, revision="abc", image=IMAGE),
        "migration-apply": jobs.build_migration_job(
            migration_owner, migration, JobRole.APPLY, source_config_map="schema-src", migration_files=files,
            revision="abc", image=IMAGE, expect_plan_hash="0123456789abcdef", checks_file=True),
        "migration-check": jobs.build_check_job(migration_owner, migration, revision="abc", image=IMAGE),
    }


@pytest.mark.parametrize("name", sorted(all_jobs()))
def test_job_matches_golden(name: str) -> None:
    assert_matches_golden(f"job-{name}", all_jobs()[name])


@pytest.mark.parametrize("name", sorted(all_jobs()))
def test_job_passes_restricted_pod_security(name: str) -> None:
    pod = all_jobs()[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    allowed_volume_types = {"emptyDir", "configMap", "secret", "persistentVolumeClaim", "name"}
    for volume in pod["volumes"]:
        assert set(volume) <= allowed_volume_types


@pytest.mark.parametrize("name", sorted(all_jobs()))
def test_credentials_only_reach_jobs_as_secret_key_refs(name: str) -> None:
    container = all_jobs()[name]["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if env["name"] in {"PGPASSWORD", "DBOPS_DATABASE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}:
            assert "value" not in env and "secretKeyRef" in env["valueFrom"]
    assert "password" not in json.dumps(container["args"]).lower()


def test_job_names_are_deterministic_and_short() -> None:
    long_owner = Owner("DatabaseBackup", "ns", "x" * 253, "uid-1", 1)
    name = jobs.job_name(long_owner, "backup")
    assert len(name) <= 63 and name == jobs.job_name(long_owner, "backup")
    assert name != jobs.job_name(Owner("DatabaseBackup", "ns", "x" * 253, "uid-2", 1), "backup")
    assert jobs.job_name(OWNER, "plan", "rev1") != jobs.job_name(OWNER, "plan", "rev2")


def test_job_template_overrides_backoff_deadline_and_scheduling() -> None:
    job = all_jobs()["backup-pvc-template"]
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "256Mi"}
    assert all_jobs()["backup-s3"]["spec"]["backoffLimit"] == 1


@pytest.mark.parametrize(("strategy", "on_conflict", "flags"), [
    ("Replace", "Keep", []),
    ("Merge", "Keep", ["--strategy", "merge"]),
    ("Merge", "Overwrite", ["--strategy", "merge", "--on-conflict", "overwrite"]),
    ("MissingOnly", "Keep", ["--strategy", "missing-only"]),
])
def test_restore_strategy_reaches_the_runner_flags(strategy: str, on_conflict: str, flags: list[str]) -> None:
    from dbops.cli.main import build_parser

    spec = DatabaseRestoreSpec.model_validate({
        "source": {"backupRef": {"name": "b"}}, "target": {"database": {"uriSecretRef": {"name": "db", "key": "u"}}},
        "mode": "Tables", "tables": ["rental"], "strategy": strategy, "onConflict": on_conflict,
        "confirmOverwrite": "app",
    })
    storage = DatabaseBackupSpec.model_validate(S3_BACKUP).storage
    job = jobs.build_restore_job(OWNER, spec, storage, "s3://b/p", image=IMAGE)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert all(flag in args for flag in flags) and ("--strategy" in args) == bool(flags)
    parsed = build_parser("restore").parse_args(args)
    assert (parsed.strategy, parsed.on_conflict) == (
        {"Replace": "replace", "Merge": "merge", "MissingOnly": "missing-only"}[strategy], on_conflict.lower())
