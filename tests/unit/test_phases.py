"""Each kind has its own phase type: the CRD lists it, assignment checks it, and mypy refuses another kind's."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import ValidationError

from dbops.api.crd import custom_resource_definition
from dbops.api.kinds import ALL_KINDS, Kind
from dbops.api.status import JobStatus

ROOT = Path(__file__).resolve().parents[2]


def phases(kind: Kind) -> tuple[str, ...]:
    annotation: Any = kind.status.model_fields["phase"].annotation
    assert get_origin(annotation) is Literal, f"{kind.kind} status phase is {annotation}, not a Literal"
    return get_args(annotation)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_each_kind_declares_its_phases_and_the_crd_lists_them(kind: Kind) -> None:
    names = phases(kind)
    assert {"Pending", "Failed"} <= set(names)  # the shared transitions start in Pending and may fail
    if issubclass(kind.status, JobStatus):
        assert "Succeeded" in names
    schema = custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["properties"]["phase"]["enum"] == list(names)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_a_phase_of_another_kind_is_refused_on_assignment(kind: Kind) -> None:
    foreign = {p for other in ALL_KINDS for p in phases(other)} - set(phases(kind))
    status = kind.status()
    for phase in sorted(foreign):
        with pytest.raises(ValidationError):
            status.phase = phase
    assert status.phase == "Pending"


def test_mypy_refuses_a_phase_the_kind_does_not_have(tmp_path: Path) -> None:
    from mypy import api

    source = tmp_path / "phases_use.py"
    source.write_text(textwrap.dedent("""
        from datetime import UTC, datetime

        from dbops.api.backup import DatabaseBackupStatus
        from dbops.api.restore import DatabaseRestoreStatus
        from dbops.reconcile.actions import Decision
        from dbops.reconcile.steps import Steps

        backup = DatabaseBackupStatus()
        backup.mark_progressing("Verifying", "Verifying", "fine")
        backup.mark_progressing("Planning", "Planning", "a migration phase")
        restore = DatabaseRestoreStatus()
        Steps(restore, Decision(restore), generation=1, now=datetime.now(UTC)).progress("Restorng", "typo", "m")
    """))
    out, err, code = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary", str(source)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert code == 1, out + err
    assert [line.split(":")[1] for line in errors] == ["11", "13"], out
    assert "'Planning'" in errors[0] and "'Restorng'" in errors[1]
