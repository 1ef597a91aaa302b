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


COMMAND = {"command": {"image": "app:1", "command": ["python", "manage.py", "migrate"]}}


def command_spec(**verify: object) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**BASE, "source": COMMAND, "verify": verify})


def runner_bytes(args: list[str], flag: str) -> int | None:
    """What the runner makes of a MiB flag in ``args`` (as its own parser and code read it)."""
    from dbops.cli import main as cli_main
    from dbops.runner import row_counts

    parsed = cli_main.build_parser(args[0]).parse_args(args)
    return row_counts.exact_max_bytes(getattr(parsed, flag))


def snapshot_args(chosen: DatabaseMigrationSpec) -> list[str]:
    from dbops.specs import framework_snapshot

    return framework_snapshot.snapshot_args(chosen, "rev-1")


def test_exact_count_bound_reaches_the_snapshot_container_and_verify_db_as_the_same_bytes() -> None:
    chosen = command_spec(builtin=["foreignKeys", "rowCounts"], rowCounts={"exactCountMaxSize": "1.5Gi"})
    snapshot, verify_db = snapshot_args(chosen), command_jobs.verify_db_args(chosen, checks_file=False)
    for args in (snapshot, verify_db):
        assert args[args.index("--row-count-exact-max-mb") + 1] == "1536.0", args
        assert runner_bytes(args, "row_count_exact_max_mb") == 1536 * 1048576
    odd = command_spec(builtin=["rowCounts"], rowCounts={"exactCountMaxSize": "1000001"})  # not whole MiB
    assert runner_bytes(snapshot_args(odd), "row_count_exact_max_mb") == 1000001
    assert runner_bytes(command_jobs.verify_db_args(odd, checks_file=False), "row_count_exact_max_mb") == 1000001


def test_exact_count_zero_counts_every_table_and_a_fraction_is_one_byte_never_none() -> None:
    every = command_spec(builtin=["rowCounts"], rowCounts={"exactCountMaxSize": "0"})
    assert runner_bytes(snapshot_args(every), "row_count_exact_max_mb") is None  # the runner's "no bound"
    tiny = command_spec(builtin=["rowCounts"], rowCounts={"exactCountMaxSize": "100m"})
    assert runner_bytes(snapshot_args(tiny), "row_count_exact_max_mb") == 1


def test_size_guards_at_their_defaults_add_no_flags_and_match_the_runner_defaults() -> None:
    from dbops.cli import migrate_verify
    from dbops.runner import row_counts

    chosen = command_spec(builtin=["foreignKeys", "orphans", "rowCounts"])
    assert chosen.verify.row_counts.exact_count_max_size == chosen.verify.orphan_scan_max_size == "256Mi"
    assert row_counts.DEFAULT_EXACT_MAX_MB == migrate_verify.DEFAULT_ORPHAN_SCAN_MAX_MB == 256
    for args in (snapshot_args(chosen), command_jobs.verify_db_args(chosen, checks_file=False),
                 job_specs.migration_args(spec(builtin=["orphans"]), JobRole.APPLY)):
        assert "--row-count-exact-max-mb" not in args and "--orphan-scan-max-mb" not in args
    # the same bytes written otherwise are the default too
    assert "--orphan-scan-max-mb" not in command_jobs.verify_db_args(
        command_spec(orphanScanMaxSize="268435456"), checks_file=False)


def test_exact_count_bound_is_not_passed_without_row_counts_nor_to_sql_migrations() -> None:
    without = command_spec(builtin=["foreignKeys"], rowCounts={"exactCountMaxSize": "1Gi"})
    assert "--row-count-exact-max-mb" not in snapshot_args(without)
    assert "--row-count-exact-max-mb" not in command_jobs.verify_db_args(without, checks_file=False)
    sql_mode = spec(builtin=["rowCounts"], rowCounts={"exactCountMaxSize": "1Gi"})  # SQL files count exactly
    assert "--row-count-exact-max-mb" not in job_specs.migration_args(sql_mode, JobRole.APPLY)


def test_orphan_scan_bound_reaches_apply_and_verify_db_when_orphans_are_counted() -> None:
    sql_mode = spec(builtin=["foreignKeys"], orphanScanMaxSize="2Gi")
    apply_args = job_specs.migration_args(sql_mode, JobRole.APPLY)
    assert runner_bytes(apply_args, "orphan_scan_max_mb") == 2 * 1024**3
    command = command_spec(builtin=["orphans"], orphanScanMaxSize="0")
    verify_db = command_jobs.verify_db_args(command, checks_file=False)
    assert verify_db[verify_db.index("--orphan-scan-max-mb") + 1] == "0.0"
    assert runner_bytes(verify_db, "orphan_scan_max_mb") is None  # every table scanned
    unused = spec(builtin=["invalidIndexes"], orphanScanMaxSize="2Gi")
    assert "--orphan-scan-max-mb" not in job_specs.migration_args(unused, JobRole.APPLY)


def test_size_guards_refuse_what_is_not_a_non_negative_quantity() -> None:
    import pytest
    from pydantic import ValidationError

    huge = command_spec(builtin=["rowCounts"], rowCounts={"exactCountMaxSize": "1e999999999"})  # admitted as well
    assert runner_bytes(snapshot_args(huge), "row_count_exact_max_mb") == 2**63  # capped: every table is below it
    for bad in ("1GBB", "-1Mi", "256 MiB", "1e99999999999999999999"):
        with pytest.raises(ValidationError, match=r"exactCountMaxSize|exact_count_max_size"):
            command_spec(rowCounts={"exactCountMaxSize": bad})
        with pytest.raises(ValidationError, match=r"orphanScanMaxSize|orphan_scan_max_size"):
            command_spec(orphanScanMaxSize=bad)
