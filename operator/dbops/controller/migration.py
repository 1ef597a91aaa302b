"""DatabaseMigration: render the source → decide (dbops.reconcile.migration) → Jobs and children → status."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dbops import errors
from dbops.api import versions
from dbops.api.common import SecretKeySelector
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.api.roles import JobRole
from dbops.api.status import utcnow
from dbops.controller import driver, effects, metrics, migration_command_plan, migration_rehearsal, plan_report
from dbops.controller.config import CONFIG
from dbops.kube import objects
from dbops.reconcile import command as command_reconcile
from dbops.reconcile import migration as migration_reconcile
from dbops.reconcile import migration_runs, retry, runlock
from dbops.reconcile import smoke as smoke_reconcile
from dbops.reconcile import window as window_reconcile
from dbops.reconcile.actions import ApplyParams, Decision, JobRequest
from dbops.reconcile.children import child_state
from dbops.reconcile.jobs import JobOutcome
from dbops.specs import command_jobs, naming, smoke_jobs
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs import runlock as runlock_specs
from dbops.specs.owner import Owner

KIND = "DatabaseMigration"
MIGRATION_FILE = versions.SOURCE_FILE  # what the runner reads: golang-migrate, Flyway and Atlas files
ROLES = (JobRole.PLAN, JobRole.CHECK, JobRole.APPLY)
COMMAND_ROLES = (JobRole.CHECK, JobRole.COMMAND, JobRole.VERIFY)


def source_files(namespace: str, spec: DatabaseMigrationSpec) -> dict[str, str]:
    """The migration files (NNNN_name.up.sql / .down.sql) from the ConfigMap or the inline list (none in command mode)."""
    source = spec.source
    if source.command is not None:
        return {}
    if source.config_map_ref is not None:
        config_map = objects.get("ConfigMap", namespace, source.config_map_ref.name)
        if config_map is None:
            raise errors.MissingReferenceError(f"ConfigMap {source.config_map_ref.name} not found")
        files = {key: str(value) for key, value in (config_map.get("data") or {}).items() if MIGRATION_FILE.match(key)}
        if not files:
            raise errors.InvalidSpecError(f"ConfigMap {source.config_map_ref.name} has no NNNN_name.up.sql files")
        return files
    inline = source.inline or []
    # Admission compares plain numbers only; dotted versions (1.2, 1_2) are checked here, before any Job.
    problem = versions.sequence_problem(((m.version, f"inline[{index}] {versions.normalise(m.version)}_{m.name}")
                                         for index, m in enumerate(inline)), allow_gaps=spec.allow_gaps)
    if problem:
        raise errors.InvalidSpecError(f"source.inline: {problem}")
    files = {}
    for migration in inline:
        files[versions.file_name(migration.version, migration.name, "up")] = migration.up
        if migration.down:
            files[versions.file_name(migration.version, migration.name, "down")] = migration.down
    return files


def revision_of(spec: DatabaseMigrationSpec, files: Mapping[str, str]) -> str:
    """Hash of the migration content and of the spec without approval: a change starts a new run."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    # Only what the user set counts: a field a later release adds with a default must not change the revision of
    # every existing resource (that re-ran each finished migration on upgrade; see recorded_source_files).
    digest.update(json.dumps(spec.model_dump(mode="json", exclude={"approval"}, exclude_defaults=True),
                             sort_keys=True).encode())
    return digest.hexdigest()[:16]


def recorded_source_files(owner: Owner, spec: DatabaseMigrationSpec, revision: str) -> dict[str, str] | None:
    """The migration files of a recorded revision, from its source snapshot ConfigMap (None when it is gone)."""
    if spec.source.command is not None:
        return {}
    config_map = objects.get("ConfigMap", owner.namespace, naming.child_name(owner.name, "source", revision))
    if config_map is None:
        return None
    return {key: str(value) for key, value in (config_map.get("data") or {}).items() if MIGRATION_FILE.match(key)}


def source_config_map(owner: Owner, spec: DatabaseMigrationSpec, files: Mapping[str, str], revision: str) -> dict[str, Any]:
    """The owned ConfigMap snapshotting this revision's migrations (and SQL checks) for the Jobs."""
    data = dict(files)
    if spec.verify.checks:
        data[job_specs.CHECKS_KEY] = job_specs.checks_json(spec.verify.checks)
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": naming.child_name(owner.name, "source", revision), "namespace": owner.namespace,
                     "labels": owner.labels("source"), "ownerReferences": [owner.owner_reference()]},
        "data": data,
    }


def reconcile(opened: driver.Opened[DatabaseMigrationSpec, DatabaseMigrationStatus]) -> None:
    """One reconcile of a DatabaseMigration (a finished one re-runs when its revision changed)."""
    body, owner, spec, status = opened.body, opened.owner, opened.spec, opened.status
    files = source_files(owner.namespace, spec)
    revision = revision_of(spec, files)
    if status.is_terminal and status.source_hash and status.source_hash != revision:
        # A finished run hashed by an older operator (its hash counted every default): the same generation and
        # the same files mean the same run, so it is re-keyed rather than run again.
        recorded = recorded_source_files(owner, spec, status.source_hash)
        if migration_runs.adopts_revision(status, revision, generation=owner.generation, recorded_files=recorded,
                                          files=files):
            driver.write_status(owner, body, Decision(status.model_copy(update={"source_hash": revision})))
            return
    token = retry.token_of(body)
    if status.is_terminal and status.source_hash == revision:
        retried = migration_runs.retry_migration(status, token, generation=owner.generation, now=utcnow())
        if retried is None:
            metrics.record_status(body, status)
        else:  # only the new attempt's number is written: the next pass names and creates its Jobs
            driver.write_status(owner, body, retried)
        return
    run = retry.run_key(revision, migration_runs.run_attempt(status, revision))
    driver.require_secrets(owner.namespace, [*env_specs.secret_references(
        spec.database, spec.backup.storage if spec.backup.enabled else None), *command_secret_references(spec)])
    config_map = source_config_map(owner, spec, files, revision)
    # The snapshot exists before anything that mounts it is even decided (as before the effect channel).
    effects.carry_out(owner, Decision(status, create=[config_map]))
    # Job and child names follow the run (revision and attempt); the source snapshot and lock, the revision.
    jobs = observe_command_jobs(owner, run) if spec.source.command is not None else observe_jobs(owner, run)
    jobs = observe_smoke_jobs(owner, spec, run, jobs)
    backup_name = naming.child_name(owner.name, "pre", owner.uid, run)
    restore_name = naming.child_name(owner.name, "rollback", owner.uid, run)
    backup_body = objects.get("DatabaseBackup", owner.namespace, backup_name) if spec.backup.enabled else None
    restore_body = objects.get("DatabaseRestore", owner.namespace, restore_name) if backup_body else None
    now = utcnow()
    observed = migration_reconcile.MigrationObserved(
        revision=revision, jobs=jobs, backup=child_state(backup_name, backup_body),
        restore=child_state(restore_name, restore_body),
        window=window_reconcile.window_state(spec.window, now) if spec.window else None,
        database_name=spec.database.name or _database_from_backup(backup_body),
        lock=observe_lock(owner, spec, revision, now) if spec.source.command is not None else None,
        rehearsal=migration_rehearsal.observe(owner, spec, run, backup_name, backup_body),
        command_plan=migration_command_plan.observe(owner, spec, status, revision, run),
        plan_report=(plan_report.observe(owner, revision, jobs.plan, jobs.names[JobRole.PLAN])
                     if spec.source.command is None else None),
    )
    decision = migration_reconcile.reconcile_migration(spec, status, observed, generation=owner.generation, now=now,
                                                       token=token)
    migration_files = [name for name in files if MIGRATION_FILE.match(name)]
    effects.carry_out(owner, decision, job_builder(owner, spec, config_map["metadata"]["name"], migration_files,
                                                   run))
    driver.write_status(owner, body, decision)


def observe_lock(owner: Owner, spec: DatabaseMigrationSpec, revision: str, now: datetime) -> runlock.RunLock:
    """The run lock of the target database: the Lease and, when another run holds it, that run's state."""
    manifest = runlock_specs.build_lease(owner, spec.database, revision, now)
    lease = objects.get("Lease", owner.namespace, manifest["metadata"]["name"])
    holder = runlock.holder_name(lease)
    holder_body = objects.get(KIND, owner.namespace, holder) if holder and holder != owner.name else None
    return runlock.lock_state(manifest, lease, owner.uid, holder_body)


def observe_jobs(owner: Owner, revision: str) -> migration_reconcile.MigrationJobs:
    """The plan, check and apply Jobs of a SQL-source revision."""
    names = {role: job_specs.job_name(owner, role, revision) for role in ROLES}
    return migration_reconcile.MigrationJobs(
        plan=driver.read_job(owner.namespace, names[JobRole.PLAN]),
        check=driver.read_job(owner.namespace, names[JobRole.CHECK]),
        apply=driver.read_job(owner.namespace, names[JobRole.APPLY]), names=names)


def observe_command_jobs(owner: Owner, revision: str) -> migration_reconcile.MigrationJobs:
    """The check, command (in the apply slot) and verify Jobs of a command-source revision."""
    names = {role: job_specs.job_name(owner, role, revision) for role in COMMAND_ROLES}
    return migration_reconcile.MigrationJobs(
        plan=JobOutcome("Missing"), check=driver.read_job(owner.namespace, names[JobRole.CHECK]),
        apply=read_command_job(owner.namespace, names[JobRole.COMMAND]),
        names=names, verify=driver.read_job(owner.namespace, names[JobRole.VERIFY]))


def read_command_job(namespace: str, name: str) -> JobOutcome:
    """The outcome of the framework command Job (exit code and output tail, not our JSON result)."""
    return driver.read_job(namespace, name, command_reconcile.command_outcome)


def observe_smoke_jobs(owner: Owner, spec: DatabaseMigrationSpec, revision: str,
                       jobs: migration_reconcile.MigrationJobs) -> migration_reconcile.MigrationJobs:
    """The run's Jobs with its smoke-test Jobs (spec.verify.jobs) added."""
    if not spec.verify.jobs:
        return jobs
    names = smoke_jobs.smoke_job_names(owner, spec, revision)
    outcomes = []
    for name in names:
        outcomes.append(driver.read_job(owner.namespace, name, smoke_reconcile.smoke_outcome))
    return dataclasses.replace(jobs, smoke=tuple(outcomes), smoke_names=tuple(names))


def command_secret_references(spec: DatabaseMigrationSpec) -> list[SecretKeySelector]:
    """The Secret keys the command's and the smoke tests' own env read (their non-optional secretKeyRefs)."""
    env = [*(spec.source.command.env if spec.source.command is not None else []),
           *(item for test in spec.verify.jobs for item in test.env)]
    selectors = []
    for item in env:
        # Complete references are the model's (and admission's) business; only required Secret keys are checked.
        ref = item.value_from.secret_key_ref if item.value_from is not None else None
        if ref is not None and not ref.optional:
            selectors.append(SecretKeySelector(name=ref.name, key=ref.key))
    return selectors


def job_builder(owner: Owner, spec: DatabaseMigrationSpec, config_map: str, migration_files: list[str],
                revision: str) -> effects.JobBuilder:
    """Builds this migration's Jobs by role."""

    def migration_job(request: JobRequest) -> dict[str, Any]:
        expect = request.expect(ApplyParams).expect_plan_hash if request.role is JobRole.APPLY else ""
        return job_specs.build_migration_job(
            owner, spec, request.role, source_config_map=config_map, migration_files=migration_files,
            revision=revision, image=CONFIG.image, expect_plan_hash=expect, checks_file=bool(spec.verify.checks))

    def check(request: JobRequest) -> dict[str, Any]:
        return job_specs.build_check_job(owner, spec, revision=revision, image=CONFIG.image)

    def smoke_job(request: JobRequest) -> dict[str, Any]:
        names = smoke_jobs.smoke_job_names(owner, spec, revision)
        return smoke_jobs.build_smoke_job(owner, spec, spec.verify.jobs[names.index(request.name)], name=request.name)

    if spec.source.command is not None:
        return effects.by_role(KIND, {
            JobRole.SMOKE: smoke_job,
            JobRole.CHECK: check,
            JobRole.PLAN: lambda request: migration_command_plan.build_job(owner, spec, request),
            JobRole.COMMAND: lambda request: command_jobs.build_command_job(owner, spec, revision=revision,
                                                                            image=CONFIG.image),
            JobRole.VERIFY: lambda request: command_jobs.build_verify_db_job(
                owner, spec, source_config_map=config_map, revision=revision, image=CONFIG.image),
        })
    def rehearse(request: JobRequest) -> dict[str, Any]:
        return migration_rehearsal.build_job(owner, spec, request, config_map=config_map,
                                             migration_files=migration_files, revision=revision, image=CONFIG.image)

    return effects.by_role(KIND, {JobRole.PLAN: migration_job, JobRole.CHECK: check, JobRole.APPLY: migration_job,
                                  JobRole.REHEARSE: rehearse, JobRole.SMOKE: smoke_job})


def _database_from_backup(body: Mapping[str, Any] | None) -> str:
    """The database name the pre-migration backup recorded in its status (source.database)."""
    source = (((body or {}).get("status") or {}).get("source") or {})
    return str(source.get("database") or "")


def _sourced(body: Mapping[str, Any]) -> bool:
    """A migration from a ConfigMap: its content may change, so it is re-hashed on each re-check (and one with a
    retry token not acted on yet is looked at again, should its event have been missed)."""
    return bool(((body.get("spec") or {}).get("source") or {}).get("configMapRef")) or retry.pending(body)


CONTROLLER = driver.Controller(KIND, DatabaseMigrationSpec, DatabaseMigrationStatus, reconcile,
                               done_when_terminal=False, recheck_finished=_sourced)
