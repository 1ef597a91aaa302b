"""The API models: defaults, validation, wire form, status transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from dbops.api import kinds
from dbops.api.backup import DatabaseBackupSpec, DatabaseBackupStatus
from dbops.api.common import parse_duration
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.restore import DatabaseRestoreSpec
from dbops.api.schedule import DatabaseBackupScheduleSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
MINIMAL_BACKUP = {
    "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
    "storage": {"s3": {"bucket": "backups"}},
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates_against_its_model(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d and d["apiVersion"].startswith("dbops.io/")]
    assert documents or path.name == "secrets.yaml"
    for document in documents:
        kind = next(k for k in kinds.ALL_KINDS if k.kind == document["kind"])
        kind.spec.model_validate(document["spec"])


def test_backup_defaults_follow_the_runbook_done_better() -> None:
    spec = DatabaseBackupSpec.model_validate(MINIMAL_BACKUP)
    assert spec.format == "custom"
    assert (spec.compression.codec, spec.compression.level) == ("zstd", 1)
    assert spec.verify.decode is True
    assert spec.deletion_policy == "Retain"
    assert spec.to_wire()["storage"] == {"s3": {"bucket": "backups", "prefix": "", "forcePathStyle": False}}


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="passwrd"):
        DatabaseBackupSpec.model_validate({**MINIMAL_BACKUP, "passwrd": "x"})


def test_negative_parallel_jobs_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"parallel_jobs|parallelJobs"):
        DatabaseBackupSpec.model_validate({**MINIMAL_BACKUP, "parallelJobs": -1})


def test_duplicate_inline_migration_versions_are_rejected() -> None:
    migration = {"version": "0001", "name": "a", "up": "SELECT 1"}
    with pytest.raises(ValidationError, match="duplicate migration version: 0001"):
        DatabaseMigrationSpec.model_validate(
            {"database": MINIMAL_BACKUP["database"], "source": {"inline": [migration, migration]}}
        )


def test_restore_defaults_do_not_overwrite() -> None:
    spec = DatabaseRestoreSpec.model_validate(
        {"source": {"backupRef": {"name": "b"}}, "target": {"database": MINIMAL_BACKUP["database"]}}
    )
    assert spec.clean is False
    assert spec.confirm_overwrite == ""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("2h", 7200), ("30d", 2592000), ("1h30m", 5400), ("1w", 604800), ("250ms", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "h", "5 m", "1.5h", "-1s"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def test_status_running_then_succeeded_sets_ready_and_timings() -> None:
    status = DatabaseBackupStatus()
    assert status.mark_progressing("Running", "Running", "dumping", generation=3, now=NOW)
    assert status.condition("Ready") is not None
    assert status.condition("Ready").status == "False"  # type: ignore[union-attr]
    assert status.mark_succeeded("done", generation=3, now=NOW + timedelta(seconds=42), job_name="j")
    ready = status.condition("Ready")
    assert ready is not None and ready.status == "True" and ready.reason == "Succeeded"
    assert ready.last_transition_time == NOW + timedelta(seconds=42)
    assert (status.phase, status.observed_generation, status.duration_seconds, status.job_name) == (
        "Succeeded", 3, 42.0, "j",
    )


def test_terminal_phase_never_regresses() -> None:
    status = DatabaseBackupStatus()
    status.mark_failed("AuthenticationFailed", "password authentication failed", now=NOW)
    assert not status.mark_progressing("Running", "Running", "", now=NOW)
    assert not status.mark_succeeded("late success", now=NOW)
    assert status.phase == "Failed"
    ready = status.condition("Ready")
    assert ready is not None and ready.reason == "AuthenticationFailed"


def test_condition_transition_time_kept_when_status_unchanged() -> None:
    status = DatabaseBackupStatus()
    status.mark_progressing("Running", "Running", "a", now=NOW)
    status.mark_progressing("Verifying", "Verifying", "b", now=NOW + timedelta(minutes=5))
    ready = status.condition("Ready")
    assert ready is not None
    assert ready.last_transition_time == NOW
    assert ready.reason == "Verifying"


def test_status_wire_form_is_camel_case() -> None:
    status = DatabaseBackupStatus()
    status.mark_succeeded("ok", generation=1, now=NOW)
    wire = status.to_wire()
    assert {"observedGeneration", "completedAt", "durationSeconds"} <= wire.keys()
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-11-25T02:00:00Z"


def test_deleting_a_backup_keeps_its_dump_unless_a_schedule_made_it() -> None:
    # An Argo CD prune of a DatabaseBackup keeps the artifact; retention of a schedule deletes what it prunes.
    assert DatabaseBackupSpec.model_validate(MINIMAL_BACKUP).to_wire()["deletionPolicy"] == "Retain"
    schedule = DatabaseBackupScheduleSpec.model_validate({"schedule": "0 2 * * *",
                                                          "backupTemplate": {"spec": MINIMAL_BACKUP}})
    assert schedule.backup_template.spec.to_wire()["deletionPolicy"] == "Delete"
    kept = {**MINIMAL_BACKUP, "deletionPolicy": "Retain"}
    explicit = DatabaseBackupScheduleSpec.model_validate({"schedule": "0 2 * * *", "backupTemplate": {"spec": kept}})
    assert explicit.backup_template.spec.deletion_policy == "Retain"
