"""The command Job's init container (our image) that snapshots the database before the command runs.

It records the framework's history and what the verify Job compares after the command: row counts (when rowCounts
is verified) and sizes (sizes.top > 0)."""

from __future__ import annotations

import copy
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec
from dbops.specs import env as env_specs
from dbops.specs import jobs as job_specs
from dbops.specs.verify_args import exact_count_args

CONTAINER_NAME = "framework-snapshot"


def snapshot_args(spec: DatabaseMigrationSpec, revision: str) -> list[str]:
    """Arguments of ``dbops migrate snapshot`` for this run (the same table selection as the verify Job's)."""
    verify = spec.verify
    args = ["migrate", "snapshot", "--run", revision, "--history-table", spec.history_table,
            "--framework", verify.row_counts.framework]
    if "rowCounts" in verify.builtin:
        args.append("--row-counts")
        if verify.row_counts.tables:
            args += ["--row-count-tables", ",".join(verify.row_counts.tables)]
        args += exact_count_args(verify)
    if verify.sizes.top > 0:
        args.append("--sizes")
    return args


def init_container(spec: DatabaseMigrationSpec, main: dict[str, Any], *, revision: str, image: str) -> dict[str, Any]:
    """The snapshot container: the command container's restricted settings, our image, only our connection env."""
    container = copy.deepcopy(main)
    template = spec.job_template
    container.update({
        "name": CONTAINER_NAME, "image": (template.image if template else None) or image, "command": ["dbops"],
        "args": snapshot_args(spec, revision),
        "env": [*env_specs.pod_identity_env(), *env_specs.database_env(spec.database),
                env_specs.value_env("HOME", job_specs.SCRATCH_PATH)],
    })
    return container
