"""Pure builders of the command-mode migration Jobs: the framework command in the user's image, verify-db in ours.

The command Job is the shared runner pod template (restricted securityContext, labels, owner
reference, deterministic name, jobTemplate scheduling/backoff overrides) with the user's image,
command and env instead of ``dbops``. Differences from the runner Jobs, on purpose:

- ``jobTemplate.image`` replaces only *our* runner image, never ``source.command.image``;
- any non-zero exit code fails the Job at once (podFailurePolicy ``NotIn [0]``): a framework's
  failed migration is not retried; pod disruptions still count against ``backoffLimit``;
- the env is the user's (values and valueFrom references, copied as given) plus our connection
  env (``DBOPS_DATABASE_URI`` / ``PG*`` from Secrets; ours win on a name clash) and
  ``DATABASE_URL`` from the same secretKeyRef as ``DBOPS_DATABASE_URI`` unless the user sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.migration_source import EnvVar
from dbops.api.roles import JobRole
from dbops.specs import env as env_specs
from dbops.specs import framework_snapshot
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner
from dbops.specs.verify_args import verification_args

COMMAND_ROLE = JobRole.COMMAND
VERIFY_ROLE = JobRole.VERIFY
CHECKS_FILE = job_specs.CHECKS_FILE

Manifest = dict[str, Any]


def command_env(spec: DatabaseMigrationSpec) -> list[env_specs.EnvVar]:
    """The command container's env: the user's variables, then the connection (DATABASE_URL too, for frameworks)."""
    assert spec.source.command is not None
    return app_env(spec, spec.source.command.env)


def app_env(spec: DatabaseMigrationSpec, env: Sequence[EnvVar]) -> list[env_specs.EnvVar]:
    """A container in the user's image: their variables, then the connection (and DATABASE_URL unless theirs)."""
    connection = env_specs.database_env(spec.database)
    ours = {item["name"] for item in connection} | {"HOME"}  # build_job sets HOME to the writable scratch dir
    user = [item.to_wire() for item in env if item.name not in ours]
    if spec.database.uri_secret_ref is not None and all(item["name"] != "DATABASE_URL" for item in user):
        connection.append(env_specs.secret_env("DATABASE_URL", spec.database.uri_secret_ref))
    return [*user, *connection]


def user_image_job(owner: Owner, spec: DatabaseMigrationSpec, *, role: JobRole, name: str, image: str,
                   argv: Sequence[str], env: list[env_specs.EnvVar]) -> Manifest:
    """The shared restricted Job running ``argv`` in the user's image, failed at once on any non-zero exit."""
    work = job_specs.RunnerWork(role=role, args=[], env=env, identity=False)
    manifest = job_specs.build_job(owner, work, name=name, image=image, template=spec.job_template)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["image"] = image  # jobTemplate.image replaces our runner image, never the user's
    container["command"] = list(argv)
    del container["args"]
    manifest["spec"]["podFailurePolicy"] = {"rules": [{
        "action": "FailJob",
        "onExitCodes": {"containerName": job_specs.CONTAINER_NAME, "operator": "NotIn", "values": [0]},
    }]}
    return manifest


def build_command_job(owner: Owner, spec: DatabaseMigrationSpec, *, revision: str, image: str = "") -> Manifest:
    """The Job that runs ``source.command`` in the user's image against the database (after, with ``image``,
    an init container in our image that records the framework's history for the verify Job to compare)."""
    source = spec.source.command
    if source is None:
        raise ValueError("build_command_job needs a spec with source.command")
    manifest = user_image_job(owner, spec, role=COMMAND_ROLE, name=job_specs.job_name(owner, COMMAND_ROLE, revision),
                              image=source.image, argv=source.command, env=command_env(spec))
    if image:
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        manifest["spec"]["template"]["spec"]["initContainers"] = [
            framework_snapshot.init_container(spec, container, revision=revision, image=image)]
    return manifest


def verify_db_args(spec: DatabaseMigrationSpec, *, checks_file: bool, snapshot_run: str = "") -> list[str]:
    """Arguments of ``dbops verify-db`` for the migration's verification settings."""
    args = ["verify-db", "--builtin", ",".join(spec.verify.builtin) or "none", "--history-table", spec.history_table,
            *verification_args(spec.verify, command_mode=True)]
    if snapshot_run:
        args += ["--snapshot-run", snapshot_run]
    if checks_file:
        args += ["--checks-file", CHECKS_FILE]
    return args


def build_verify_db_job(owner: Owner, spec: DatabaseMigrationSpec, *, source_config_map: str, revision: str,
                        image: str) -> Manifest:
    """The Job (our image) that verifies the database after the command; SQL checks come from the source ConfigMap."""
    checks_file = bool(spec.verify.checks)
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if checks_file:
        volume, mount = job_specs.checks_volume(source_config_map)
        volumes.append(volume)
        mounts.append(mount)
    work = job_specs.RunnerWork(role=VERIFY_ROLE, args=verify_db_args(spec, checks_file=checks_file,
                                                                      snapshot_run=revision),
                                env=env_specs.database_env(spec.database), volumes=volumes, mounts=mounts)
    return job_specs.build_job(owner, work, name=job_specs.job_name(owner, VERIFY_ROLE, revision), image=image,
                               template=spec.job_template)
