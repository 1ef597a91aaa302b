"""DatabaseMigration: render the source → decide (dbops.reconcile.migration) → Jobs and children → status."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from dbops import errors
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.api.status import utcnow
from dbops.controller import driver, metrics
from dbops.controller.config import CONFIG
from dbops.kube import objects
from dbops.reconcile import migration as migration_reconcile
from dbops.reconcile import window as window_reconcile
from dbops.reconcile.children import child_state
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs import naming
from dbops.specs.owner import Owner

KIND = "DatabaseMigration"
MIGRATION_FILE = re.compile(r"^[0-9]+_[A-Za-z0-9_]+\.(up|down)\.sql$")
CHECKS_KEY = "checks.json"
ROLES = ("plan", "check", "apply")


def source_files(namespace: str, spec: DatabaseMigrationSpec) -> dict[str, str]:
    """The migration files (NNNN_name.up.sql / .down.sql) from the ConfigMap or the inline list."""
    source = spec.source
    if source.command is not None:
        raise errors.InvalidSpecError("source.command is not supported by the operator yet; use configMapRef or inline")
    if source.config_map_ref is not None:
        config_map = objects.get("ConfigMap", namespace, source.config_map_ref.name)
        if config_map is None:
            raise errors.MissingReferenceError(f"ConfigMap {source.config_map_ref.name} not found")
        files = {key: str(value) for key, value in (config_map.get("data") or {}).items() if MIGRATION_FILE.match(key)}
        if not files:
            raise errors.InvalidSpecError(f"ConfigMap {source.config_map_ref.name} has no NNNN_name.up.sql files")
        return files
    files = {}
    for migration in source.inline or []:
        files[f"{migration.version}_{migration.name}.up.sql"] = migration.up
        if migration.down:
            files[f"{migration.version}_{migration.name}.down.sql"] = migration.down
    return files


def revision_of(spec: DatabaseMigrationSpec, files: Mapping[str, str]) -> str:
    """Hash of the migration content and of the spec without approval: a change starts a new run."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    digest.update(json.dumps(spec.model_dump(mode="json", exclude={"approval"}), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def source_config_map(owner: Owner, spec: DatabaseMigrationSpec, files: Mapping[str, str], revision: str) -> dict[str, Any]:
    """The owned ConfigMap snapshotting this revision's migrations (and SQL checks) for the Jobs."""
    data = dict(files)
    if spec.verify.checks:
        data[CHECKS_KEY] = json.dumps([check.to_wire() for check in spec.verify.checks])
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": naming.child_name(owner.name, "source", revision), "namespace": owner.namespace,
                     "labels": owner.labels("source"), "ownerReferences": [owner.owner_reference()]},
        "data": data,
    }


def reconcile(body: dict[str, Any]) -> None:
    """One reconcile of a DatabaseMigration body."""
    owner = Owner.from_body(body)
    status = DatabaseMigrationStatus.model_validate(body.get("status") or {})
    spec = DatabaseMigrationSpec.model_validate(body.get("spec") or {})
    files = source_files(owner.namespace, spec)
    revision = revision_of(spec, files)
    if status.is_terminal and status.source_hash == revision:
        metrics.PHASES.record(KIND, owner.namespace, owner.name, status.phase)
        return
    driver.require_secrets(owner.namespace, env_specs.secret_references(
        spec.database, spec.backup.storage if spec.backup.enabled else None))
    config_map = source_config_map(owner, spec, files, revision)
    objects.create_or_adopt(config_map)
    names = {role: job_specs.job_name(owner, role, revision) for role in ROLES}
    jobs = migration_reconcile.MigrationJobs(
        plan=driver.read_job(owner.namespace, names["plan"]), check=driver.read_job(owner.namespace, names["check"]),
        apply=driver.read_job(owner.namespace, names["apply"]), names=names)
    backup_name = naming.child_name(owner.name, "pre", owner.uid, revision)
    restore_name = naming.child_name(owner.name, "rollback", owner.uid, revision)
    backup_body = objects.get("DatabaseBackup", owner.namespace, backup_name) if spec.backup.enabled else None
    restore_body = objects.get("DatabaseRestore", owner.namespace, restore_name) if backup_body else None
    now = utcnow()
    observed = migration_reconcile.MigrationObserved(
        revision=revision, jobs=jobs, backup=child_state(backup_name, backup_body),
        restore=child_state(restore_name, restore_body),
        window=window_reconcile.window_state(spec.window, now) if spec.window else None,
        database_name=spec.database.name or _database_from_backup(backup_body),
    )
    decision = migration_reconcile.reconcile_migration(spec, status, observed, generation=owner.generation, now=now)
    migration_files = [name for name in files if MIGRATION_FILE.match(name)]
    driver.start_jobs(owner, decision, job_builder(owner, spec, config_map["metadata"]["name"], migration_files,
                                                   revision))
    driver.write_status(owner, body, decision)


def job_builder(owner: Owner, spec: DatabaseMigrationSpec, config_map: str, migration_files: list[str],
                revision: str) -> driver.JobBuilder:
    """Builds this migration's Jobs by role."""

    def build(role: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if role == "check":
            return job_specs.build_check_job(owner, spec, revision=revision, image=CONFIG.image)
        return job_specs.build_migration_job(
            owner, spec, role, source_config_map=config_map, migration_files=migration_files, revision=revision,
            image=CONFIG.image, expect_plan_hash=str(params.get("expect_plan_hash") or ""),
            checks_file=bool(spec.verify.checks))

    return build


def _database_from_backup(body: Mapping[str, Any] | None) -> str:
    """The database name in a backup's artifact path (<prefix>/<namespace>/<database>/<name>/...)."""
    artifact = ((body or {}).get("status") or {}).get("artifact") or {}
    uri = str(artifact.get("manifestUri") or "")
    parts = uri.rstrip("/").split("/")
    return parts[-3] if len(parts) >= 4 else ""
