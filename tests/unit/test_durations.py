"""One duration grammar from the CRD to every runner flag: what the models admit, the runner accepts."""

from __future__ import annotations

import re
from typing import Any

import pytest

# A worktree set up before hypothesis joined the test dependencies skips this module until `bash scripts/setup`.
pytest.importorskip("hypothesis", reason="run `bash scripts/setup` to install the test dependencies")
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dbops import errors
from dbops.api import common
from dbops.api.migration import DatabaseMigrationSpec, Timeouts
from dbops.cli.main import check_arguments
from dbops.runner import result
from dbops.specs import jobs

MIGRATION: dict[str, Any] = {
    "database": {"host": "pg", "name": "app"},
    "source": {"inline": [{"version": "1", "name": "init", "up": "CREATE TABLE t (id int)"}]},
}


def _apply_args(timeouts: dict[str, str]) -> list[str]:
    spec = DatabaseMigrationSpec.model_validate({**MIGRATION, "timeouts": timeouts})
    return jobs.migration_args(spec, "apply")


@pytest.mark.parametrize("value", ["5m", "1h30m", "2h", "1d", "1w", "1500ms", "0", "0s", "24d20h31m23s647ms"])
def test_a_migration_job_built_from_a_crd_duration_passes_the_runners_own_parsing(value: str) -> None:
    args = _apply_args({"lockTimeout": value, "statementTimeout": value})
    check_arguments(args)


def test_durations_reach_postgresql_in_its_units() -> None:
    args = _apply_args({"lockTimeout": "1h30m", "statementTimeout": "1500ms"})
    assert args[args.index("--lock-timeout") + 1] == "5400s"
    assert args[args.index("--statement-timeout") + 1] == "1500ms"


def test_the_runner_flag_takes_the_crd_grammar_from_a_person_too() -> None:
    check_arguments(["migrate", "apply", "--source", "/m", "--lock-timeout", "1h30m",
                     "--statement-timeout", "2m", "--lock-wait-timeout", "1m30s"])


@pytest.mark.parametrize("value", ["5 s", "5min", "1.5s", "-1s", "5", "s", "1h 30m", "25d"])
def test_a_bad_runner_duration_is_a_user_error_naming_the_flag(value: str) -> None:
    with pytest.raises(errors.InvalidSpecError, match="--lock-timeout") as raised:
        check_arguments(["migrate", "apply", "--source", "/m", "--lock-timeout", value])
    assert result.exit_code_for(raised.value) == 2


def test_a_timeout_above_postgresqls_limit_is_refused_by_the_model() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Timeouts.model_validate({"lockTimeout": "25d"})
    Timeouts.model_validate({"lockTimeout": "24d20h31m23s647ms"})
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Timeouts.model_validate({"statementTimeout": "24d20h31m23s648ms"})


def test_parse_duration_sums_every_part() -> None:
    assert common.parse_duration("1h30m") == 5400
    assert common.parse_duration("1w2d") == 9 * 86400
    assert common.parse_duration("250ms") == 0.25
    assert common.parse_duration("0") == 0


_GRAMMAR = re.compile(common.DURATION_PATTERN)
_UNIT = st.sampled_from(["ms", "s", "m", "h", "d", "w", "min", "us", "", " ", "M", "S"])
_NUMBER = st.one_of(st.integers(0, 2_000_000).map(str), st.sampled_from(["", "-1", "1.5", "007", "0"]))
_DURATIONS = st.one_of(
    st.from_regex(_GRAMMAR, fullmatch=True).filter(lambda v: len(v) <= 32),
    st.lists(st.tuples(_NUMBER, _UNIT), min_size=1, max_size=4).map(lambda ps: "".join(n + u for n, u in ps)),
    st.text(max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(_DURATIONS)
@example("1000ms1000000ms1000000ms1000000ms")  # 33 characters: the model refused it, the runner took it
def test_model_and_runner_agree_on_every_timeout(value: str) -> None:
    """Differential: a lock/statement timeout the model admits builds args the runner accepts, and vice versa."""
    try:
        Timeouts.model_validate({"lockTimeout": value})
        admitted = True
    except ValidationError:
        admitted = False
    try:
        check_arguments(["migrate", "apply", "--source", "/m", "--lock-timeout", value])
        accepted = True
    except errors.InvalidSpecError:
        accepted = False
    assert admitted == accepted, value
    if admitted:
        check_arguments(_apply_args({"lockTimeout": value, "statementTimeout": value}))

