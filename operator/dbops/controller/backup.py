"""DatabaseBackup: read → decide (dbops.reconcile.backup) → create Jobs → write status; deletion and ttl."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from dbops import errors
from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.roles import JobRole
from dbops.api.status import utcnow
from dbops.controller import driver, effects, metrics
from dbops.controller.config import CONFIG
from dbops.controller.job_cache import JOBS
from dbops.controller.requeue import REQUEUE
from dbops.kube import events, objects
from dbops.kube import jobs as kube_jobs
from dbops.reconcile import backup as backup_reconcile
from dbops.reconcile import confirmation, retry
from dbops.reconcile.actions import ArtifactParams
from dbops.reconcile.jobs import MISSING
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs import storage as storage_specs
from dbops.specs.owner import Owner

KIND = "DatabaseBackup"
ACTIVE_ROLES = (JobRole.BACKUP, JobRole.VERIFY)


def job_builder(owner: Owner, spec: DatabaseBackupSpec) -> effects.JobBuilder:
    """Builds this backup's Jobs by role."""
    return effects.by_role(KIND, {
        JobRole.BACKUP: lambda request: job_specs.build_backup_job(owner, spec, image=CONFIG.image),
        JobRole.VERIFY: lambda request: job_specs.build_verify_job(
            owner, spec, request.expect(ArtifactParams).artifact_dir, image=CONFIG.image),
        JobRole.DELETE: lambda request: job_specs.build_delete_artifact_job(
            owner, spec, request.expect(ArtifactParams).artifact_dir, image=CONFIG.image),
    })


def reconcile(opened: driver.Opened[DatabaseBackupSpec, DatabaseBackupStatus]) -> None:
    """One reconcile of a DatabaseBackup (a finished one: its ttl, metrics and retry token)."""
    body, owner, spec, status = opened.body, opened.owner, opened.spec, opened.status
    token = retry.token_of(body)
    if status.is_terminal:
        retried = backup_reconcile.retry_backup(status, token, generation=owner.generation, now=utcnow())
        if retried is None:
            _finished(body, status)
        else:  # only the new attempt's number is written: the next pass names and creates its Jobs
            driver.write_status(owner, body, retried)
        return
    names = job_names(owner, status)
    # A backup with no status yet was never seen started (the status written after creating its Job records it):
    # its Job exists only if an operator stopped between the two, and creating it then adopts it and looks again
    # (effects). So the GET that answers 404 for every new backup is skipped (bench/README.md, P7).
    new = not body.get("status")
    observed = backup_reconcile.BackupJobs(
        backup=MISSING if new else driver.read_job(owner.namespace, names[JobRole.BACKUP]),
        verify=driver.read_job(owner.namespace, names[JobRole.VERIFY]) if status.phase == "Verifying" else MISSING,
        backup_name=names[JobRole.BACKUP], verify_name=names[JobRole.VERIFY],
    )
    if observed.backup.state == "Missing":
        driver.require_secrets(owner.namespace, env_specs.secret_references(spec.database, spec.storage))
    decision = backup_reconcile.reconcile_backup(spec, status, observed, generation=owner.generation, now=utcnow(),
                                                 token=token)
    effects.carry_out(owner, decision, job_builder(owner, spec))
    driver.write_status(owner, body, decision)
    assert isinstance(decision.status, DatabaseBackupStatus)
    metrics.record_backup(body, decision.status)
    expire_later(owner, decision.status)


def job_names(owner: Owner, status: DatabaseBackupStatus) -> dict[JobRole, str]:
    """The backup and verify Jobs of the current attempt (dbops.reconcile.retry)."""
    return {role: job_specs.job_name(owner, role, *retry.run_parts(status.attempt)) for role in ACTIVE_ROLES}


def expected_directory(owner: Owner, spec: DatabaseBackupSpec) -> str | None:
    """Where the runner commits this backup, ``<storage>/<namespace>/<database>/<name>`` (None when the
    database name is unknown: a URI Secret that is gone or names none)."""
    database = spec.database.name
    ref = spec.database.uri_secret_ref
    if database is None and ref is not None:
        uri = objects.secret_value(owner.namespace, ref.name, ref.key)
        database = confirmation.uri_database(uri) if uri is not None else None
    if not database or "/" in database or database in (".", ".."):  # the runner refuses those: nothing stored
        return None
    return storage_specs.join_location(storage_specs.storage_access(spec.storage).location,
                                       owner.namespace, database, owner.name)


def finalize(body: Mapping[str, Any], retry: int) -> None:
    """Deletion: wait for a backup Job that may still commit, delete what it stored per deletionPolicy, then
    stop the remaining Jobs and release; retried until done."""
    owner = Owner.from_body(body)
    spec = DatabaseBackupSpec.model_validate(body.get("spec") or {})
    status = DatabaseBackupStatus.model_validate(body.get("status") or {})
    names = job_names(owner, status)
    delete_jobs(owner.namespace, [names[JobRole.VERIFY]])  # it only reads: stop it now
    delete_name = job_specs.job_name(owner, JobRole.DELETE)
    backup_job = driver.read_job(owner.namespace, names[JobRole.BACKUP], strict=False)
    expected = (expected_directory(owner, spec) if spec.deletion_policy == "Delete"
                and backup_reconcile.job_vanished(status, backup_job) else None)
    delete_job = driver.read_job(owner.namespace, delete_name, strict=False)
    step = backup_reconcile.deletion_step(spec, status, delete_job, delete_name, backup_job, expected_dir=expected)
    decision = step.decision
    if decision is not None and decision.jobs:
        try:
            effects.carry_out(owner, decision, job_builder(owner, spec))
        except errors.PermanentError as error:  # the resource is going: say so and let it go
            step = backup_reconcile.DeletionStep(True, message=f"could not delete the artifact: {error}",
                                                 warning=True)
        else:
            for event in decision.events:
                events.emit(driver.involved(owner), event.type, event.reason, event.message)
    if not step.done:
        raise kopf.TemporaryError(step.message, delay=min(2.0 + retry, 10.0))
    delete_jobs(owner.namespace, names.values())
    if step.warning:
        events.emit(driver.involved(owner), "Warning", "ArtifactNotDeleted", step.message)
    driver.logger.info("DatabaseBackup %s/%s deleted: %s", owner.namespace, owner.name, step.message)
    driver.forget(KIND, owner.namespace, owner.name)


def delete_jobs(namespace: str, names: Iterable[str]) -> None:
    """Stop these Jobs of the backup (their pods first)."""
    for name in names:
        kube_jobs.delete_job(namespace, name)
        JOBS.gone(namespace, name)


def expire_later(owner: Owner, status: DatabaseBackupStatus) -> None:
    """Wake a finished backup with a ttl when it expires (one requeue entry, not a Kopf timer per backup)."""
    if status.is_terminal and status.expires_at is not None:
        REQUEUE.after((KIND, owner.namespace, owner.name), (status.expires_at - utcnow()).total_seconds())


def _finished(body: dict[str, Any], status: DatabaseBackupStatus) -> None:
    """A finished backup: its metrics, and its deletion once its ttl passed."""
    metrics.record_status(body, status)
    metrics.record_backup(body, status)
    owner = Owner.from_body(body)
    if backup_reconcile.is_expired(status, utcnow()):
        driver.logger.info("DatabaseBackup %s/%s expired (ttl); deleting it", owner.namespace, owner.name)
        objects.delete(KIND, owner.namespace, owner.name)
    else:
        expire_later(owner, status)


CONTROLLER = driver.Controller(KIND, DatabaseBackupSpec, DatabaseBackupStatus, reconcile, finished=_finished,
                               done_when_terminal=False, recheck_finished=retry.pending)
