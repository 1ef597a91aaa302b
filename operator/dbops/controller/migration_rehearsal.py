"""DatabaseMigration rehearsal in the controller: observe its Job and backup, build its Job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.roles import JobRole
from dbops.controller import driver
from dbops.kube import objects
from dbops.reconcile import migration_rehearsal as rehearsal
from dbops.reconcile.actions import JobRequest, RehearseParams
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs import rehearsal_jobs
from dbops.specs.owner import Owner


def observe(owner: Owner, spec: DatabaseMigrationSpec, revision: str, pre_backup_name: str,
            pre_backup: Mapping[str, Any] | None) -> rehearsal.RehearsalObserved | None:
    """The rehearsal Job of this revision and the backup it restores (looked up only while the Job is missing)."""
    if not spec.rehearsal.enabled or spec.source.command is not None:
        return None
    job_name = job_specs.job_name(owner, JobRole.REHEARSE, revision)
    job = driver.read_job(owner.namespace, job_name)
    scratch = rehearsal_jobs.scratch_database(owner)
    if job.state != "Missing":
        return rehearsal.RehearsalObserved(job, job_name, rehearsal.RehearsalSource("Ready"), scratch)
    if spec.rehearsal.backup_ref is not None:
        name = spec.rehearsal.backup_ref.name
        source = rehearsal.backup_source(name, objects.get("DatabaseBackup", owner.namespace, name))
    elif rehearsal.uses_pre_backup(spec):
        source = rehearsal.backup_source(pre_backup_name, pre_backup)
    else:
        source = rehearsal.newest_verified(spec, objects.list_objects("DatabaseBackup", owner.namespace))
    if source.state == "Ready":
        references = env_specs.secret_references(spec.database, source.storage)
        references += env_specs.secret_references(spec.rehearsal.server)
        driver.require_secrets(owner.namespace, references)
    return rehearsal.RehearsalObserved(job, job_name, source, scratch)


def build_job(owner: Owner, spec: DatabaseMigrationSpec, request: JobRequest, *, config_map: str,
              migration_files: list[str], revision: str, image: str) -> dict[str, Any]:
    """The rehearsal Job for a request of the reconcile."""
    params = request.expect(RehearseParams)
    if params.storage is None:
        raise ValueError(f"rehearsal Job {request.name} has no backup storage")
    job_input = rehearsal_jobs.RehearsalJobInput(
        artifact_dir=params.artifact_dir, storage=params.storage, expect_plan_hash=params.expect_plan_hash,
        max_duration_seconds=params.max_duration_seconds, max_lock_bytes=params.max_lock_bytes,
        available_space_bytes=params.available_space_bytes)
    return rehearsal_jobs.build_rehearsal_job(owner, spec, job_input, source_config_map=config_map,
                                              migration_files=migration_files, revision=revision, image=image,
                                              checks_file=bool(spec.verify.checks))
