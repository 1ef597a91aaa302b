"""spec.importHistory reaches the plan, apply and rehearsal Jobs as flags the runner's parser accepts."""

from __future__ import annotations

from typing import Any

from dbops.api.common import Storage
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.roles import JobRole
from dbops.cli.main import build_parser
from dbops.specs import jobs as job_specs
from dbops.specs import rehearsal_jobs

BASE: dict[str, Any] = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                        "source": {"configMapRef": {"name": "m"}}}


def test_import_history_flags_reach_plan_apply_and_rehearse() -> None:
    spec = DatabaseMigrationSpec.model_validate({**BASE, "allowGaps": True,
                                                 "importHistory": {"from": "golang-migrate",
                                                                   "table": "legacy.schema_migrations"}})
    for action in (JobRole.PLAN, JobRole.APPLY):
        args = job_specs.migration_args(spec, action)
        assert args[args.index("--import-history"):args.index("--import-history") + 4] == [
            "--import-history", "golang-migrate", "--import-history-table", "legacy.schema_migrations"]
        parsed = build_parser("migrate").parse_args(args)
        assert (parsed.import_history, parsed.import_history_table) == ("golang-migrate", "legacy.schema_migrations")
    storage = Storage.model_validate({"s3": {"bucket": "bkt"}})
    rehearse = rehearsal_jobs.rehearse_args(
        spec, rehearsal_jobs.RehearsalJobInput(artifact_dir="dir", storage=storage, expect_plan_hash=""),
        scratch="dbops_rehearsal_0123456789ab", location_args=[], checks_file=False)
    assert build_parser("migrate").parse_args(rehearse).import_history == "golang-migrate"

def test_no_import_flags_without_import_history() -> None:
    spec = DatabaseMigrationSpec.model_validate(BASE)
    assert "--import-history" not in job_specs.migration_args(spec, JobRole.APPLY)
