"""Regression tests for what the admission fuzz test (tests/integration/test_admission_fuzz.py) found."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter
from pydantic import ValidationError

from dbops import errors
from dbops.api.backup import DatabaseBackupSpec
from dbops.api.common import DatabaseConnection, SecretKeySelector
from dbops.api.cron import cron_problem
from dbops.api.kubevalues import quantity
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.restore import DatabaseRestoreSpec
from dbops.cli.main import check_arguments
from dbops.controller import migration as migration_controller
from dbops.runner.migrations import source as migration_source
from dbops.specs import jobs
from dbops.specs.owner import Owner

OWNER = Owner(kind="DatabaseBackup", namespace="prod", name="nightly", uid="uid-1", generation=1)
DATABASE: dict[str, Any] = {"host": "pg", "name": "app"}


def test_a_value_starting_with_a_dash_stays_the_value_of_its_flag() -> None:
    # argparse took the region "-c" for a flag: "argument --s3-region: expected one argument".
    backup = DatabaseBackupSpec.model_validate({
        "database": DATABASE, "storage": {"s3": {"bucket": "bkt", "region": "-c"}},
        "scope": {"tables": ["-x"], "excludeSchemas": ["--help"]},
    })
    args = jobs.build_backup_job(OWNER, backup, image="i")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--s3-region=-c" in args and "--table=-x" in args and "--exclude-schema=--help" in args
    check_arguments(args)
    restore = DatabaseRestoreSpec.model_validate({
        "source": {"backupRef": {"name": "b"}}, "target": {"database": {"host": "pg", "name": "-x"}},
        "mode": "Tables", "tables": ["-t"], "clean": True, "confirmOverwrite": "-x",
    })
    storage = backup.storage
    manifest = jobs.build_restore_job(OWNER, restore, storage, "s3://bkt/prod/app/b", image="i")
    check_arguments(manifest["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("key", [".", "..", "..x", "...", "a b"])
def test_a_secret_key_the_api_server_refuses_in_a_job_is_refused_by_the_model(key: str) -> None:
    with pytest.raises(ValidationError):
        SecretKeySelector.model_validate({"name": "db", "key": key})


@pytest.mark.parametrize("name", ["00c9g..eyek", "a.-b", "a-.b", ".a", "a."])
def test_a_secret_name_that_is_no_dns_subdomain_is_refused(name: str) -> None:
    # "00c9g..eyek" was admitted and every Job reading the Secret was refused.
    with pytest.raises(ValidationError):
        SecretKeySelector.model_validate({"name": name, "key": "uri"})


@pytest.mark.parametrize("key", [".env", "uri", "tls.crt", "a..b", "_x"])
def test_secret_keys_kubernetes_allows_stay_allowed(key: str) -> None:
    SecretKeySelector.model_validate({"name": "db", "key": key})


def test_an_explicit_null_enum_is_refused_like_the_api_server_does() -> None:
    with pytest.raises(ValidationError, match="sslMode: null"):
        DatabaseConnection.model_validate({**DATABASE, "sslMode": None})
    assert DatabaseConnection.model_validate(DATABASE).ssl_mode is None


def test_binary_exa_is_a_quantity_not_an_exponent() -> None:
    assert quantity("2Ei") == 2 * 1024**6
    assert quantity("2E") == 2 * 10**18
    assert quantity("2E3") == 2000


def test_quantities_as_resource_parse_quantity_reads_them() -> None:
    """Found with the size guards: the API server admits 1e999999999 (ParseQuantity keeps the exponent as an int32,
    no cap for decimal values); the model raised decimal.Overflow (a traceback, not a validation error)."""
    from dbops.api.kubevalues import capped_int

    assert quantity("1e999999999") > 10**100 and capped_int(quantity("1e999999999")) == 2**63 - 1
    assert quantity("1e4294967296") == 1  # the exponent wraps as Go's int32(parsed) does
    assert quantity("9Ei") == quantity("10Ei") == 2**63 - 1  # binary sizes are capped at the largest int64
    assert quantity("1e-999999999") == quantity("1n") and quantity("1.5n") == quantity("2n")  # rounded up to 1n
    with pytest.raises(ValueError, match="exponent exceeds int64"):
        quantity("1e99999999999999999999")


BAD_INLINE = [
    ([{"version": "1", "name": "a", "up": "SELECT 1"}, {"version": "3", "name": "b", "up": "SELECT 1"}], "consecutive"),
    ([{"version": "1", "name": "_a", "up": "SELECT 1"}], "name"),
    ([{"version": "1", "name": "a", "up": "-- nothing yet\n/* later */ ;"}], "no SQL statement"),
]


@pytest.mark.parametrize(("inline", "problem"), BAD_INLINE, ids=["gap", "leading-underscore", "comment-only"])
def test_inline_migrations_the_runner_refuses_are_refused_by_the_model(inline: list[Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        DatabaseMigrationSpec.model_validate({"database": DATABASE, "source": {"inline": inline}})


def test_admitted_inline_migrations_load_in_the_runner(tmp_path: Path) -> None:
    spec = DatabaseMigrationSpec.model_validate({"database": DATABASE, "source": {"inline": [
        {"version": "0001", "name": "init", "up": "-- users\nCREATE TABLE users (id int);", "down": "DROP TABLE users"},
        {"version": "0002", "name": "0002_add_email", "up": "/* why */ ALTER TABLE users ADD email text;"},
    ]}})
    for name, text in migration_controller.source_files("ns", spec).items():
        (tmp_path / name).write_text(text)
    assert [m.version for m in migration_source.validate_sequence(migration_source.load_directory(tmp_path))] == [
        "0001", "0002"]


def test_value_from_is_typed_so_the_job_is_never_refused() -> None:
    def env(value_from: dict[str, Any]) -> dict[str, Any]:
        return {"database": DATABASE, "source": {"command": {"image": "app:1", "command": ["migrate"],
                                                             "env": [{"name": "X", "valueFrom": value_from}]}}}

    for bad in ({"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": "0002"}},
                {"secretKeyRef": {"name": "app"}}, {"fieldRef": {"fieldPath": "spec.containers"}}, {},
                {"secretKeyRef": {"name": "a", "key": "k"}, "fieldRef": {"fieldPath": "metadata.name"}}):
        with pytest.raises(ValidationError):
            DatabaseMigrationSpec.model_validate(env(bad), strict=True)
    good = DatabaseMigrationSpec.model_validate(env({"secretKeyRef": {"name": "app", "key": "token", "optional": True}}))
    assert good.source.command is not None
    assert good.source.command.env[0].to_wire()["valueFrom"] == {
        "secretKeyRef": {"name": "app", "key": "token", "optional": True}}


def test_confirm_overwrite_must_name_the_target_whenever_the_target_names_its_database() -> None:
    base: dict[str, Any] = {"source": {"backupRef": {"name": "b"}}, "confirmOverwrite": "yes"}
    for database in ({"host": "pg", "name": "app"}, {"uriSecretRef": {"name": "db", "key": "uri"}, "name": "app"}):
        with pytest.raises(ValidationError, match=r"must equal target\.database\.name 'app'"):
            DatabaseRestoreSpec.model_validate({**base, "target": {"database": database}})
    # A URI alone names its database in the Secret: the runner compares at run time.
    DatabaseRestoreSpec.model_validate({**base, "target": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}}})


NEVER_FIRES = ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 FEB ?", "5 4 31 02 *"]
FIRES = ["0 0 29 2 *", "0 0 31 2 1", "0 0 31 2,3 *", "0 0 30 feb,apr *", "0 0 31 */2 *", "0 0 31 2-3 *", "@monthly"]


@pytest.mark.parametrize("schedule", NEVER_FIRES)
def test_a_window_that_never_opens_is_refused(schedule: str) -> None:
    # Found by the admission fuzz test (seed 1214818850): "0 0 31 2 *" was admitted, then the window reconcile
    # raised CroniterBadDateError. The CEL twin (CRON_FIRES_RULE) refuses the same cases at the API server.
    with pytest.raises(ValidationError, match="never fires"):
        DatabaseMigrationSpec.model_validate({"database": DATABASE, "source": {"configMapRef": {"name": "m"}},
                                              "window": {"schedule": schedule, "duration": "2h"}})


@pytest.mark.parametrize("schedule", FIRES)
def test_a_schedule_that_fires_some_year_is_admitted(schedule: str) -> None:
    assert cron_problem(schedule) is None
    croniter(schedule, datetime(2026, 11, 29, tzinfo=UTC)).get_next(datetime)


def _inline(*entries: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"version": version, "name": name, "up": f"CREATE TABLE t_{name} (id int);"} for version, name in entries]


def test_inline_migrations_take_the_file_version_grammar_and_load_in_the_runner(tmp_path: Path) -> None:
    """Dotted (1.1, 1_2) and gapped inline versions, as in files: admitted, rendered, loaded in the same order."""
    spec = DatabaseMigrationSpec.model_validate({"database": DATABASE, "allowGaps": True, "source": {"inline": _inline(
        ("1", "accounts"), ("1.1", "add_name"), ("1_2", "orders"), ("4", "index"), ("20240101120000", "late"))}})
    files = migration_controller.source_files("ns", spec)
    assert sorted(files) == ["1.1_add_name.up.sql", "1.2_orders.up.sql", "1_accounts.up.sql",
                             "20240101120000_late.up.sql", "4_index.up.sql"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = migration_source.load_directory(tmp_path, allow_gaps=True)
    assert [m.version for m in loaded] == ["1", "1.1", "1.2", "4", "20240101120000"]


@pytest.mark.parametrize(("entries", "allow_gaps", "named"), [
    ((("1", "a"), ("1.1", "b"), ("1.3", "c")), False, "inline[1] 1.1_b is followed by inline[2] 1.3_c"),
    ((("1", "a"), ("1.0", "b")), True, "duplicate migration version 1: inline[0] 1_a and inline[1] 1.0_b"),
    ((("1.2", "a"), ("1_2", "b")), True, "duplicate migration version 1.2"),
    ((("1", "a"), ("3", "b"), ("3.1", "c")), False, "inline[0] 1_a is followed by inline[1] 3_b"),
], ids=["dotted-gap", "1.0-is-1", "1_2-is-1.2", "gap-before-a-dotted-one"])
def test_the_operator_names_the_inline_entries_admission_cannot_compare(entries: tuple[tuple[str, str], ...],
                                                                       allow_gaps: bool, named: str) -> None:
    """CEL compares plain numbers only; a list with a dotted version is checked by the operator (InvalidSpec)."""
    spec = DatabaseMigrationSpec.model_validate({"database": DATABASE, "allowGaps": allow_gaps,
                                                 "source": {"inline": _inline(*entries)}})
    with pytest.raises(errors.InvalidSpecError, match=re.escape(named)):
        migration_controller.source_files("ns", spec)


def test_plain_inline_gaps_need_allow_gaps_at_admission() -> None:
    gapped = {"database": DATABASE, "source": {"inline": _inline(("1", "a"), ("3", "b"))}}
    with pytest.raises(ValidationError, match=re.escape("1 is followed by 3 (allowGaps: true accepts gaps)")):
        DatabaseMigrationSpec.model_validate(gapped)
    assert DatabaseMigrationSpec.model_validate({**gapped, "allowGaps": True}).allow_gaps
    with pytest.raises(ValidationError, match="pattern"):
        DatabaseMigrationSpec.model_validate({"database": DATABASE, "source": {"inline": _inline(("1.x", "a"))}})
