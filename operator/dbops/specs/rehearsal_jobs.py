"""The Job that rehearses a DatabaseMigration's plan on a copy restored from a backup (``dbops migrate rehearse``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from dbops.api.common import Storage
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.roles import JobRole
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs import storage as storage_specs
from dbops.specs.owner import Owner

SCRATCH_PREFIX = "dbops_rehearsal_"
SERVER_ENV_PREFIX = "DBOPS_REHEARSAL_"  # cli.migrate_rehearse.SERVER_ENV_PREFIX (a unit test keeps them equal)


@dataclass(frozen=True)
class RehearsalJobInput:
    """The backup to restore, the plan hash to find on the copy, and the gates."""

    artifact_dir: str
    storage: Storage
    expect_plan_hash: str
    max_duration_seconds: float | None = None
    max_lock_bytes: int | None = None
    available_space_bytes: int | None = None


def scratch_database(owner: Owner) -> str:
    """``dbops_rehearsal_<12 hex>``, one per resource (the runner creates and drops only such names): a copy left
    by a killed rehearsal is dropped by the resource's next rehearsal, whatever its revision."""
    seed = "\0".join((owner.namespace, owner.name, owner.uid))
    return SCRATCH_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:12]


def rehearse_args(spec: DatabaseMigrationSpec, params: RehearsalJobInput, *, scratch: str, location_args: list[str],
                  checks_file: bool) -> list[str]:
    """``migrate rehearse`` with the apply's planning, execution and verification flags, the backup and the gates."""
    args = job_specs.migration_args(spec, "apply", expect_plan_hash=params.expect_plan_hash, checks_file=checks_file)
    args = ["migrate", "rehearse", *(arg for arg in args[2:] if arg != "--dry-run")]
    args += ["--from", params.artifact_dir, *location_args, "--scratch-database", scratch]
    if params.max_duration_seconds is not None:
        args += ["--max-duration", f"{round(params.max_duration_seconds * 1000)}ms"]
    if params.max_lock_bytes is not None:
        args += ["--max-exclusive-lock-table-bytes", str(params.max_lock_bytes)]
    if params.available_space_bytes is not None:
        args += ["--available-space-bytes", str(params.available_space_bytes)]
    if spec.rehearsal.server is not None:
        args.append("--server-from-env")
    return args


def server_env(spec: DatabaseMigrationSpec) -> list[env_specs.EnvVar]:
    """The staging server's connection as ``DBOPS_REHEARSAL_DATABASE_URI`` / ``DBOPS_REHEARSAL_PG*`` (Secret
    references only), beside the target's own variables."""
    if spec.rehearsal.server is None:
        return []
    return [{**var, "name": SERVER_ENV_PREFIX + var["name"].removeprefix("DBOPS_")}
            for var in env_specs.database_env(spec.rehearsal.server)]


def build_rehearsal_job(owner: Owner, spec: DatabaseMigrationSpec, params: RehearsalJobInput, *, source_config_map: str,
                        migration_files: list[str], revision: str, image: str, checks_file: bool) -> dict[str, Any]:
    """The rehearsal Job: the migrations and checks from the source ConfigMap, the backup's storage read-only."""
    access = storage_specs.storage_access(params.storage, read_only=True)
    volumes: list[dict[str, Any]] = [{
        "name": "migrations",
        "configMap": {"name": source_config_map, "items": [{"key": f, "path": f} for f in sorted(migration_files)]},
    }, *access.volumes]
    mounts: list[dict[str, Any]] = [{"name": "migrations", "mountPath": job_specs.MIGRATIONS_PATH, "readOnly": True},
                                    *access.mounts]
    if checks_file:
        volume, mount = job_specs.checks_volume(source_config_map)
        volumes.append(volume)
        mounts.append(mount)
    work = job_specs.RunnerWork(
        role=JobRole.REHEARSE,
        args=rehearse_args(spec, params, scratch=scratch_database(owner), location_args=access.args,
                           checks_file=checks_file),
        env=[*env_specs.database_env(spec.database), *server_env(spec), *access.env], volumes=volumes, mounts=mounts,
    )
    return job_specs.build_job(owner, work, name=job_specs.job_name(owner, JobRole.REHEARSE, revision), image=image,
                               template=spec.job_template)
