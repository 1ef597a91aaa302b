"""DatabaseRestore: resolve the source backup → decide (dbops.reconcile.restore) → Jobs and children → status."""

from __future__ import annotations

from typing import Any

from dbops import errors
from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.restore import DatabaseRestoreSpec, DatabaseRestoreStatus
from dbops.api.roles import JobRole
from dbops.api.status import utcnow
from dbops.controller import driver, effects, metrics
from dbops.controller.config import CONFIG
from dbops.kube import objects
from dbops.reconcile import backup as backup_reconcile
from dbops.reconcile import confirmation, retry
from dbops.reconcile import restore as restore_reconcile
from dbops.reconcile.actions import JobRequest, RestoreParams
from dbops.reconcile.children import ChildState, child_state
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs import naming
from dbops.specs import storage as storage_specs
from dbops.specs.owner import Owner

KIND = "DatabaseRestore"


def resolve_source(namespace: str, spec: DatabaseRestoreSpec) -> restore_reconcile.RestoreSource:
    """The backup to restore: from a DatabaseBackup (which must have succeeded) or a storage location."""
    source = spec.source
    if source.backup_ref is not None:
        name = source.backup_ref.name
        body = objects.get("DatabaseBackup", namespace, name)
        if body is None:
            raise errors.MissingReferenceError(f"DatabaseBackup {name} not found")
        status = DatabaseBackupStatus.model_validate(body.get("status") or {})
        backup_spec = DatabaseBackupSpec.model_validate(body.get("spec") or {})
        if status.phase == "Failed":
            return restore_reconcile.RestoreSource("Failed", message=f"DatabaseBackup {name} failed: {status.message}")
        if status.phase != "Succeeded" or status.artifact is None:
            return restore_reconcile.RestoreSource("Waiting", message=f"waiting for DatabaseBackup {name} to succeed")
        return restore_reconcile.RestoreSource(
            "Ready", artifact_dir=backup_reconcile.artifact_directory(status.artifact),
            storage=backup_spec.storage, sha256=status.artifact.sha256, backup_name=name)
    assert source.storage is not None
    location = storage_specs.storage_access(source.storage).location
    return restore_reconcile.RestoreSource("Ready", artifact_dir=storage_specs.join_location(location, source.path or ""),
                                           storage=source.storage)


def job_builder(owner: Owner, spec: DatabaseRestoreSpec) -> effects.JobBuilder:
    """Builds this restore's Jobs by role."""


    def restore(request: JobRequest) -> dict[str, Any]:
        params = request.expect(RestoreParams)
        return job_specs.build_restore_job(owner, spec, params.storage, params.artifact_dir, image=CONFIG.image)

    return effects.by_role(KIND, {JobRole.RESTORE: restore})


def safety_backup_name(owner: Owner, *attempt: int) -> str:
    """The deterministic name of the safety backup (of an attempt after the first: dbops.reconcile.retry)."""
    return naming.child_name(owner.name, "safety", owner.uid, *attempt)


def reconcile(opened: driver.Opened[DatabaseRestoreSpec, DatabaseRestoreStatus]) -> None:
    """One reconcile of a DatabaseRestore (a finished one only for its retry token)."""
    body, owner, spec, status = opened.body, opened.owner, opened.spec, opened.status
    token = retry.token_of(body)
    if status.is_terminal:
        retried = restore_reconcile.retry_restore(status, token, generation=owner.generation, now=utcnow())
        if retried is None:
            metrics.record_status(body, status)
        else:  # only the new attempt's number is written: the next pass names and creates its Jobs
            driver.write_status(owner, body, retried)
        return
    source = resolve_source(owner.namespace, spec)
    attempt = retry.run_parts(status.attempt)
    safety_name = safety_backup_name(owner, *attempt)
    safety = (child_state(safety_name, objects.get("DatabaseBackup", owner.namespace, safety_name))
              if spec.safety_backup.enabled else ChildState(safety_name))
    job_name = job_specs.job_name(owner, JobRole.RESTORE, *attempt)
    restore_job = driver.read_job(owner.namespace, job_name)
    if restore_job.state == "Missing" and source.state == "Ready":
        driver.require_secrets(owner.namespace, env_specs.secret_references(
            spec.target.database, source.storage, spec.safety_backup.storage if spec.safety_backup.enabled else None))
        ref = spec.target.database.uri_secret_ref
        if spec.confirm_overwrite and ref is not None and spec.target.database.name is None:
            confirmation.check_target(spec, objects.secret_value(owner.namespace, ref.name, ref.key))
    observed = restore_reconcile.RestoreObserved(source, safety, restore_job, job_name)
    decision = restore_reconcile.reconcile_restore(spec, status, observed, generation=owner.generation, now=utcnow(),
                                                   token=token)
    effects.carry_out(owner, decision, job_builder(owner, spec))
    driver.write_status(owner, body, decision)


CONTROLLER = driver.Controller(KIND, DatabaseRestoreSpec, DatabaseRestoreStatus, reconcile, done_when_terminal=False,
                               recheck_finished=retry.pending)
