"""The runner flags built from DatabaseMigration.spec.verify (row counts)."""

from __future__ import annotations

from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.roles import JobRole
from dbops.specs import command_jobs
from dbops.specs import jobs as job_specs

BASE = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "source": {"inline": [{"version": "1", "name": "init", "up": "CREATE TABLE t (id int);"}]}}


def spec(**verify: object) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**BASE, "verify": verify})


def test_row_counts_are_off_by_default_since_data_migrations_change_them() -> None:
    args = job_specs.migration_args(spec(), JobRole.APPLY)
    assert args[args.index("--verify-builtin") + 1] == "foreignKeys,orphans,invalidIndexes"
    assert "--row-count-tables" not in args and "--row-count-tolerance" not in args


def test_row_count_settings_reach_apply_and_verify_db() -> None:
    chosen = spec(builtin=["rowCounts"], rowCounts={"tables": ["bookings", "app.users"], "tolerancePercent": 2.5,
                                                    "framework": "django"})
    expected = ["--row-count-tables", "bookings,app.users", "--row-count-tolerance", "2.5", "--framework", "django"]
    apply_args = job_specs.migration_args(chosen, JobRole.APPLY)
    verify_args = command_jobs.verify_db_args(chosen, checks_file=False)
    for args in (apply_args, verify_args):
        start = args.index("--row-count-tables")
        assert args[start:start + 6] == expected, args


def test_row_count_settings_without_the_builtin_add_nothing() -> None:
    args = job_specs.migration_args(spec(rowCounts={"tables": ["bookings"]}), JobRole.APPLY)
    assert "--row-count-tables" not in args


def test_queries_and_sizes_reach_the_runner_as_flags() -> None:
    import json

    from dbops.cli import main as cli_main

    chosen = spec(queries=[{"name": "by-user", "sql": "SELECT 1 FROM bookings WHERE user_id = 1",
                            "usesIndex": ["bookings_user_idx"], "maxCost": 50}], sizes={"top": 0})
    args = job_specs.migration_args(chosen, JobRole.APPLY)
    queries = json.loads(args[args.index("--queries-json") + 1])
    assert queries[0]["usesIndex"] == ["bookings_user_idx"] and queries[0]["maxCost"] == 50
    assert args[args.index("--sizes-top") + 1] == "0"
    assert "--sizes-top" not in job_specs.migration_args(spec(), JobRole.APPLY)
    parsed = cli_main.build_parser("migrate").parse_args(args)
    assert parsed.queries_json and parsed.sizes_top == 0
