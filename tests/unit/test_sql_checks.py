"""One SQL check model: what the CRD's checks admit is what the runner's --checks-json/--checks-file load."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dbops import errors
from dbops.api.common import SqlCheck
from dbops.runner import dbverify, restore_checks
from dbops.specs.jobs import checks_json

ADMITTED: list[dict[str, Any]] = [
    {"name": "no-orphan-bookings", "sql": "SELECT b.id FROM bookings b LEFT JOIN users u ON u.id = b.user_id "
                                          "WHERE u.id IS NULL", "expect": {"rows": 0}},
    {"name": "mentors", "sql": "SELECT count(*) FROM mentors", "expect": {"min": 1, "max": 10.5}},
    {"name": "status", "sql": "SELECT 'ok'", "expect": {"equals": "ok"}},
    {"name": "x", "sql": "SELECT 1", "expect": {"rows": 1, "equals": "1"}},
]
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"name": "Bad Name", "sql": "SELECT 1", "expect": {"rows": 1}}, "name"),
    ({"name": "c", "sql": "", "expect": {"rows": 1}}, "sql"),
    ({"name": "c", "sql": "SELECT 1", "expect": {}}, "at least one of rows, min, max, equals"),
    ({"name": "c", "sql": "SELECT 1", "expect": {"between": 1}}, "between"),
    ({"name": "c", "sql": "SELECT 1", "expect": {"rows": -1}}, "rows"),
    ({"name": "c", "sql": "SELECT 1"}, "expect"),
    ({"name": "c", "sql": "SELECT 1", "expect": {"rows": 0}, "timeout": "5s"}, "timeout"),
]


def test_the_runner_loads_the_checks_the_spec_admits_unchanged() -> None:
    spec = [SqlCheck.model_validate(check) for check in ADMITTED]
    assert restore_checks.load_checks(checks_json(spec)) == tuple(spec)


def test_the_runner_loads_a_yaml_checks_file_with_the_same_model(tmp_path: Path) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text("- name: pending\n  sql: SELECT count(*) FROM bookings\n  expect: {equals: 2}\n"
                    "- name: enabled\n  sql: SELECT true\n  expect: {equals: true}\n")
    loaded = dbverify.load_checks_file(path)
    assert all(isinstance(check, SqlCheck) for check in loaded)
    assert [check.expect.equals for check in loaded] == ["2", "true"]  # YAML scalars, as the CRD's text


@pytest.mark.parametrize(("check", "field"), REFUSED, ids=[field for _, field in REFUSED])
def test_what_the_spec_refuses_the_runner_refuses_naming_the_check(check: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        SqlCheck.model_validate(check)
    with pytest.raises(errors.InvalidSpecError, match=field) as refused:
        restore_checks.load_checks(json.dumps([ADMITTED[0], check]))
    message = str(refused.value)
    assert message.startswith("--checks-json: ")
    assert f"check {check['name']!r}" in message


def test_a_list_is_required() -> None:
    with pytest.raises(errors.InvalidSpecError, match=r"--checks-json: .*list"):
        restore_checks.load_checks(json.dumps({"name": "c"}))


@pytest.mark.parametrize(("value", "expected", "passed"), [
    (Decimal("5.00"), "5", True),  # numeric(5,2) against the CRD's text: equal by value (failed as text before)
    (5, "5.0", True),
    (200, "200", True),
    (0.1, "0.1", True),
    (Decimal("5.01"), "5", False),
    (True, "true", True),
    (True, "t", True),
    (False, "true", False),
    ("ok", "ok", True),
    ("5.00", "5", False),  # a text column stays text
    (None, "null", False),
])
def test_equals_compares_by_the_value_type(value: Any, expected: str, passed: bool) -> None:
    check = SqlCheck.model_validate({"name": "c", "sql": "SELECT 1", "expect": {"equals": expected}})
    assert dbverify.evaluate_expectation(check, [(value,)]).passed is passed


def test_the_model_refuses_a_number_for_equals_as_the_api_server_does() -> None:
    # The CRD's `equals` is text: a model that turned 0 into "0" admitted what the API server refuses
    # (admission fuzz, seed 459616322). Files keep their YAML scalars through the loader instead.
    with pytest.raises(ValidationError):
        SqlCheck.model_validate({"name": "c", "sql": "SELECT 0", "expect": {"equals": 0}}, strict=True)
    loaded = dbverify.load_checks([{"name": "c", "sql": "SELECT 0", "expect": {"equals": 0}},
                                   {"name": "d", "sql": "SELECT false", "expect": {"equals": False}}])
    assert [check.expect.equals for check in loaded] == ["0", "false"]
