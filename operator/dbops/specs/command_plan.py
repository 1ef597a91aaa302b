"""Pure builders of command mode's plan: the plan Jobs (the user's image) and the plan ConfigMap of a long output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.roles import JobRole
from dbops.specs import command_jobs
from dbops.specs import jobs as job_specs
from dbops.specs import plan_report as plan_report_specs
from dbops.specs.owner import Owner

PLAN_ROLE = JobRole.PLAN
CONFIG_MAP_KEY = "plan.txt"
Manifest = dict[str, Any]


def plan_job_names(owner: Owner, revision: str) -> tuple[str, str]:
    """The plan Job and the confirm Job (the plan again, right before the command) of a revision."""
    return job_specs.job_name(owner, PLAN_ROLE, revision), job_specs.job_name(owner, PLAN_ROLE, revision, "confirm")


def build_plan_job(owner: Owner, spec: DatabaseMigrationSpec, *, name: str, argv: Sequence[str]) -> Manifest:
    """The Job running the framework's plan command: the command Job's image, env and restrictions, no snapshot."""
    source = spec.source.command
    if source is None:
        raise ValueError("build_plan_job needs a spec with source.command")
    return command_jobs.user_image_job(owner, spec, role=PLAN_ROLE, name=name, image=source.image, argv=argv,
                                       env=command_jobs.command_env(spec))


def build_config_map(owner: Owner, text: str, *, revision: str, plan_hash: str, sha256: str) -> Manifest:
    """The plan ConfigMap (dbops.specs.plan_report) holding a plan's complete output (credentials already masked)
    under plan.txt."""
    return plan_report_specs.plan_config_map(owner, revision=revision, plan_hash=plan_hash, sha256=sha256,
                                             data={CONFIG_MAP_KEY: text})
