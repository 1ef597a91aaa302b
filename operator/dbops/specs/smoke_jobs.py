"""Pure builders of a DatabaseMigration's smoke-test Jobs (spec.verify.jobs): the user's image, command and env.

Like the command Job: the shared restricted pod template, the user's env plus the connection env,
no retry of a failing test (podFailurePolicy FailJob on any non-zero exit), and the test's timeout
as activeDeadlineSeconds.
"""

from __future__ import annotations

import math
from typing import Any

from dbops.api.common import parse_duration
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.migration_verify import SmokeTest
from dbops.api.roles import JobRole
from dbops.specs import command_jobs
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner

SMOKE_ROLE = JobRole.SMOKE
Manifest = dict[str, Any]


def smoke_job_names(owner: Owner, spec: DatabaseMigrationSpec, revision: str) -> list[str]:
    """The deterministic Job name of each smoke test of a revision, in spec order."""
    return [job_specs.job_name(owner, SMOKE_ROLE, revision, test.name) for test in spec.verify.jobs]


def build_smoke_job(owner: Owner, spec: DatabaseMigrationSpec, test: SmokeTest, *, name: str) -> Manifest:
    """The Job that runs one smoke test against the migrated database."""
    manifest = command_jobs.user_image_job(owner, spec, role=SMOKE_ROLE, name=name, image=test.image,
                                           argv=test.command, env=command_jobs.app_env(spec, test.env))
    manifest["spec"]["activeDeadlineSeconds"] = max(1, math.ceil(parse_duration(test.timeout)))
    return manifest
