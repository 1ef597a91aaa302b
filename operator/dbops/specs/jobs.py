"""Pure builders of the runner Jobs: one function per kind of work, one shared pod template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dbops.api.backup import DatabaseBackupSpec
from dbops.api.common import JobTemplate, SqlCheck, Storage, postgres_duration
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.restore import DatabaseRestoreSpec
from dbops.api.roles import JobRole
from dbops.specs import env as env_specs
from dbops.specs import naming
from dbops.specs import storage as storage_specs
from dbops.specs.argv import option
from dbops.specs.owner import Owner
from dbops.specs.verify_args import verification_args

DEFAULT_IMAGE = "ghcr.io/dbops/dbops:0.1.0"
RUNNER_UID = 65532
CONTAINER_NAME = "runner"
TERMINATION_LOG = "/dev/termination-log"
SCRATCH_PATH = "/tmp"  # noqa: S108 - an emptyDir volume, the only writable path
MIGRATIONS_PATH = "/migrations"
CHECKS_PATH = "/dbops-checks"
CHECKS_KEY = "checks.json"
"""The key of the SQL checks in a migration's source ConfigMap, and the file name it is mounted as."""
CHECKS_FILE = f"{CHECKS_PATH}/{CHECKS_KEY}"
DEFAULT_BACKOFF_LIMIT = 1
TTL_ANNOTATION = "dbops.io/ttl-seconds-after-finished"
"""The user's jobTemplate.ttlSecondsAfterFinished, held back until the operator recorded the Job's result."""
FAIL_JOB_EXIT_CODES = (1, 2, 4)
"""Runner exit codes that retrying cannot fix (verification failed, user error, internal error)."""

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RunnerWork:
    """What one runner container does: its arguments, environment and volumes."""

    role: JobRole
    args: list[str]
    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    identity: bool = True
    """Give the container the pod's name and namespace (env.pod_identity_env); not in a user's image."""


def job_name(owner: Owner, role: JobRole, *revision: str | int) -> str:
    """The deterministic name of an owner's Job for a role (and a revision, for kinds that re-run)."""
    return naming.child_name(owner.name, role, owner.uid, *revision)


def build_job(owner: Owner, work: RunnerWork, *, name: str, image: str, template: JobTemplate | None,
              owned: bool = True, hold_ttl: bool = True) -> Manifest:
    """A batch/v1 Job running one runner command under the Pod Security ``restricted`` profile.

    With ``hold_ttl`` (every Job whose result goes into status), the user's ``ttlSecondsAfterFinished`` is kept in
    the TTL_ANNOTATION instead of the spec: the operator sets it once the resource's status holds the result, so
    the TTL controller can never remove a finished Job (and its result) before the operator read it, as when the
    operator is down or slow (CloudNativePG likewise deletes its Jobs only after reading them)."""
    template = template or JobTemplate()
    labels = owner.labels(work.role)
    pod_labels = {**(template.pod_labels or {}), **labels}
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": template.image or image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["dbops"],
        "args": work.args,
        "env": [*(item for item in (env_specs.pod_identity_env() if work.identity else [])
                  if item["name"] not in {e["name"] for e in work.env}), *work.env, env_specs.value_env("HOME", SCRATCH_PATH)],
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_PATH}, *work.mounts],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if template.resources is not None:
        container["resources"] = template.resources.to_wire()
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}}, *work.volumes],
    }
    if template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod_spec["tolerations"] = [toleration.to_wire() for toleration in template.tolerations]
    pod_metadata: Manifest = {"labels": pod_labels}
    if template.pod_annotations:
        pod_metadata["annotations"] = dict(template.pod_annotations)
    job_spec: Manifest = {
        "backoffLimit": DEFAULT_BACKOFF_LIMIT if template.backoff_limit is None else template.backoff_limit,
        "podFailurePolicy": {
            "rules": [{
                "action": "FailJob",
                "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In",
                                "values": list(FAIL_JOB_EXIT_CODES)},
            }]
        },
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    if template.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = template.active_deadline_seconds
    metadata: Manifest = {"name": name, "namespace": owner.namespace, "labels": labels}
    if template.ttl_seconds_after_finished is not None:
        if hold_ttl:
            metadata["annotations"] = {TTL_ANNOTATION: str(template.ttl_seconds_after_finished)}
        else:
            job_spec["ttlSecondsAfterFinished"] = template.ttl_seconds_after_finished
    if owned:
        metadata["ownerReferences"] = [owner.owner_reference()]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def backup_args(owner: Owner, spec: DatabaseBackupSpec, location: str) -> list[str]:
    """Arguments of ``dbops backup`` for a DatabaseBackup spec."""
    args = [
        "backup", "--storage", location, "--name", owner.name, "--namespace", owner.namespace,
        "--run-id", owner.uid, "--format", spec.format, "--compression", spec.compression.codec,
    ]
    if spec.compression.codec != "none":
        args += ["--compression-level", str(spec.compression.level)]
    if spec.parallel_jobs > 1:
        args += ["--jobs", str(spec.parallel_jobs)]
    scope = spec.scope
    if scope.schema_only:
        args.append("--schema-only")
    if scope.data_only:
        args.append("--data-only")
    for flag, values in (
        ("--schema", scope.schemas), ("--exclude-schema", scope.exclude_schemas), ("--table", scope.tables),
        ("--exclude-table", scope.exclude_tables), ("--exclude-table-data", scope.exclude_table_data),
    ):
        for value in values:
            args += option(flag, value)
    return args


def build_backup_job(owner: Owner, spec: DatabaseBackupSpec, *, image: str) -> Manifest:
    """The Job that dumps, compresses, checksums and uploads one backup."""
    access = storage_specs.storage_access(spec.storage)
    work = RunnerWork(
        role=JobRole.BACKUP,
        args=[*backup_args(owner, spec, access.location), *access.args, *storage_specs.cleanup_args(spec.storage)],
        env=[*env_specs.database_env(spec.database), *access.env],
        volumes=access.volumes, mounts=access.mounts,
    )
    return build_job(owner, work, name=job_name(owner, JobRole.BACKUP), image=image, template=spec.job_template)


def build_verify_job(owner: Owner, spec: DatabaseBackupSpec, artifact_dir: str, *, image: str) -> Manifest:
    """The Job that re-checks and decodes a stored backup (and restore-tests it when asked)."""
    access = storage_specs.storage_access(spec.storage, read_only=True)
    args = ["verify", "--from", artifact_dir, *access.args]
    env = list(access.env)
    if spec.verify.restore_test:
        args.append("--restore-test")
        env = [*env_specs.database_env(spec.database), *env]
        if spec.verify.checks:
            args += ["--checks-json", checks_json(spec.verify.checks)]
    work = RunnerWork(role=JobRole.VERIFY, args=args, env=env, volumes=access.volumes, mounts=access.mounts)
    return build_job(owner, work, name=job_name(owner, JobRole.VERIFY), image=image, template=spec.job_template)


def build_delete_artifact_job(owner: Owner, spec: DatabaseBackupSpec, artifact_dir: str, *, image: str) -> Manifest:
    """The Job that removes a backup's stored artifact (not owned: it outlives the deleted resource)."""
    access = storage_specs.storage_access(spec.storage)
    work = RunnerWork(role=JobRole.DELETE, args=["delete-backup", "--from", artifact_dir, *access.args,
                                                 *storage_specs.cleanup_args(spec.storage)],
                      env=list(access.env), volumes=access.volumes, mounts=access.mounts)
    template = (spec.job_template or JobTemplate()).model_copy(update={"ttl_seconds_after_finished": 600})
    # Not held: the finalizer reads its result (retrying every few seconds) while the resource still exists.
    return build_job(owner, work, name=job_name(owner, JobRole.DELETE), image=image, template=template, owned=False,
                     hold_ttl=False)


def checks_volume(source_config_map: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume and mount that put the source ConfigMap's checks.json at CHECKS_FILE."""
    return ({"name": "checks", "configMap": {"name": source_config_map,
                                             "items": [{"key": CHECKS_KEY, "path": CHECKS_KEY}]}},
            {"name": "checks", "mountPath": CHECKS_PATH, "readOnly": True})


def checks_json(checks: list[SqlCheck]) -> str:
    """The ``--checks-json`` argument: the checks' wire form as compact JSON (checks hold no secrets)."""
    return json.dumps([check.to_wire() for check in checks], separators=(",", ":"))


RESTORE_MODES = {"Full": "full", "Tables": "tables", "SchemaOnly": "schema-only", "DataOnly": "data-only"}
RESTORE_STRATEGIES = {"Replace": "replace", "Merge": "merge", "MissingOnly": "missing-only"}


def build_restore_job(owner: Owner, spec: DatabaseRestoreSpec, source_storage: Storage, artifact_dir: str,
                      *, image: str) -> Manifest:
    """The Job that restores a stored backup into the target database."""
    access = storage_specs.storage_access(source_storage, read_only=True)
    args = ["restore", "--from", artifact_dir, "--mode", RESTORE_MODES[spec.mode], *access.args]
    for table in spec.tables:
        args += option("--table", table)
    if spec.strategy != "Replace":
        args += ["--strategy", RESTORE_STRATEGIES[spec.strategy]]
    if spec.on_conflict != "Keep":
        args += ["--on-conflict", spec.on_conflict.lower()]
    if spec.target.create:
        args.append("--create")
    if spec.clean:
        args.append("--clean")
    if spec.recreate:
        args.append("--recreate")
    if spec.parallel_jobs > 1:
        args += ["--jobs", str(spec.parallel_jobs)]
    if spec.confirm_overwrite:
        args += option("--confirm-overwrite", spec.confirm_overwrite)
    if spec.terminate_connections:
        args.append("--terminate-connections")
    if not spec.verify.row_counts:
        args.append("--no-row-count-check")
    if spec.verify.checks:
        args += ["--checks-json", checks_json(spec.verify.checks)]
    work = RunnerWork(
        role=JobRole.RESTORE, args=args, env=[*env_specs.database_env(spec.target.database), *access.env],
        volumes=access.volumes, mounts=access.mounts,
    )
    return build_job(owner, work, name=job_name(owner, JobRole.RESTORE), image=image, template=spec.job_template)


def migration_args(spec: DatabaseMigrationSpec, action: str, *, expect_plan_hash: str = "",
                   checks_file: bool = False) -> list[str]:
    """Arguments of ``dbops migrate plan|apply`` for a DatabaseMigration spec."""
    args = ["migrate", str(action), "--source", MIGRATIONS_PATH, "--history-table", spec.history_table]
    if spec.baseline_version:
        args += ["--baseline-version", spec.baseline_version]
    if spec.target_version:
        args += ["--target-version", spec.target_version]
    if spec.allow_down:
        args.append("--allow-down")
    if spec.allow_gaps:
        args.append("--allow-gaps")
    if spec.import_history is not None:
        args += ["--import-history", spec.import_history.tool]
        if spec.import_history.table:
            args += ["--import-history-table", spec.import_history.table]
    if spec.lint.enabled:
        args += ["--lint", "--lint-fail-on", spec.lint.fail_on]
    else:
        args.append("--no-lint")
    if action == "plan":
        args.append("--report-line")  # the complete report, read back from the pod log into <name>-plan
    if action == "apply":
        if spec.dry_run:
            args.append("--dry-run")
        timeouts = spec.timeouts
        args += ["--lock-timeout", postgres_duration(timeouts.lock_timeout), "--lock-retries", str(timeouts.lock_retries)]
        if timeouts.statement_timeout:
            args += ["--statement-timeout", postgres_duration(timeouts.statement_timeout)]
        if expect_plan_hash:
            args += ["--expect-plan-hash", expect_plan_hash]
        args.append("--verify" if spec.verify.builtin or checks_file else "--no-verify")
        if spec.verify.builtin:
            args += ["--verify-builtin", ",".join(spec.verify.builtin)]
        args += verification_args(spec.verify)
        if checks_file:
            args += ["--checks-file", CHECKS_FILE]
    return args


def build_migration_job(owner: Owner, spec: DatabaseMigrationSpec, action: JobRole, *, source_config_map: str,
                        migration_files: list[str], revision: str, image: str, expect_plan_hash: str = "",
                        checks_file: bool = False) -> Manifest:
    """The Job that plans or applies migrations from a rendered source ConfigMap."""
    volumes: list[dict[str, Any]] = [{
        "name": "migrations",
        "configMap": {"name": source_config_map, "items": [{"key": f, "path": f} for f in sorted(migration_files)]},
    }]
    mounts: list[dict[str, Any]] = [{"name": "migrations", "mountPath": MIGRATIONS_PATH, "readOnly": True}]
    if checks_file and action == "apply":
        volume, mount = checks_volume(source_config_map)
        volumes.append(volume)
        mounts.append(mount)
    work = RunnerWork(
        role=action,
        args=migration_args(spec, action, expect_plan_hash=expect_plan_hash, checks_file=checks_file),
        env=env_specs.database_env(spec.database), volumes=volumes, mounts=mounts,
    )
    return build_job(owner, work, name=job_name(owner, action, revision), image=image, template=spec.job_template)


def build_check_job(owner: Owner, spec: DatabaseMigrationSpec, *, revision: str, image: str) -> Manifest:
    """The Job that runs the pre-migration checks."""
    checks = spec.pre_checks
    work = RunnerWork(
        role=JobRole.CHECK,
        args=["check", "--max-active-connections", str(checks.max_active_connections),
              "--max-blocking-transaction-seconds", str(checks.max_blocking_transaction_seconds),
              "--fail-on", checks.fail_on],
        env=env_specs.database_env(spec.database),
    )
    return build_job(owner, work, name=job_name(owner, JobRole.CHECK, revision), image=image, template=spec.job_template)
