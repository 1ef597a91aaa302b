"""One version grammar from the CRD to the runner: every targetVersion/baselineVersion the model admits, the
runner flag accepts (and the Job built from the spec passes the runner's own parsing), and nothing more."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("hypothesis", reason="run `bash scripts/setup` to install the test dependencies")
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dbops import errors
from dbops.api import versions
from dbops.api.crd import custom_resource_definition
from dbops.api.kinds import ALL_KINDS
from dbops.api.migration import DatabaseMigrationSpec
from dbops.cli.main import check_arguments
from dbops.specs import jobs

MIGRATION: dict[str, Any] = {
    "database": {"host": "pg", "name": "app"},
    "source": {"configMapRef": {"name": "migrations"}},
}
_VERSIONS = st.one_of(
    st.from_regex(re.compile(versions.OPTIONAL_PATTERN), fullmatch=True),
    st.lists(st.sampled_from(["1", "0", "12", "007", ".", "_", "-", "v", "x", " ", "..", "1e3", "²"]),
             max_size=8).map("".join),
    st.text(max_size=40),
)


def _admitted(field: str, value: str) -> bool:
    try:
        DatabaseMigrationSpec.model_validate({**MIGRATION, field: value})
    except ValidationError:
        return False
    return True


def _accepted(flag: str, value: str) -> bool:
    try:
        check_arguments(["migrate", "apply", "--source", "/m", flag, value])
    except errors.InvalidSpecError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(_VERSIONS)
def test_model_and_runner_agree_on_every_version(value: str) -> None:
    for field, flag in (("targetVersion", "--target-version"), ("baselineVersion", "--baseline-version")):
        admitted = _admitted(field, value)
        assert admitted == (value == "" or _accepted(flag, value)), (field, value)
        if admitted and value:
            spec = DatabaseMigrationSpec.model_validate({**MIGRATION, field: value, "allowGaps": True})
            args = jobs.migration_args(spec, "apply")
            assert args[args.index(flag) + 1] == value and "--allow-gaps" in args
            check_arguments(args)


@pytest.mark.parametrize("value", ["1", "0001", "1.2", "1_2", "2.0.1", "20240101120000", "0"])
def test_flyway_and_timestamp_versions_are_admitted(value: str) -> None:
    assert _admitted("targetVersion", value) and _accepted("--target-version", value)


@pytest.mark.parametrize("value", ["v1", "1.", ".1", "1..2", "1-2", "1.x", " 1", "1" * 33])
def test_other_versions_are_refused_by_both(value: str) -> None:
    assert not _admitted("targetVersion", value)
    with pytest.raises(errors.InvalidSpecError, match="--target-version"):
        check_arguments(["migrate", "apply", "--source", "/m", "--target-version", value])


def test_the_crd_carries_the_same_pattern() -> None:
    kind = next(k for k in ALL_KINDS if k.kind == "DatabaseMigration")
    schema = custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["targetVersion"]["pattern"] == spec["baselineVersion"]["pattern"] == versions.OPTIONAL_PATTERN
    assert spec["allowGaps"]["type"] == "boolean"
