"""DatabaseBackupSchedule decisions and the trigger's deterministic backup names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbops import errors
from dbops.api.migration import MaintenanceWindow
from dbops.api.schedule import DatabaseBackupScheduleSpec, DatabaseBackupScheduleStatus
from dbops.cli import trigger
from dbops.reconcile.schedule import ScheduledBackup, reconcile_schedule
from dbops.reconcile.window import window_state

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SPEC = DatabaseBackupScheduleSpec.model_validate({
    "schedule": "*/1 * * * *",
    "backupTemplate": {"metadata": {"labels": {"team": "db"}},
                       "spec": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                                "storage": {"s3": {"bucket": "bkt"}}}},
    "retention": {"keepLast": 2},
})


def backups(count: int) -> list[ScheduledBackup]:
    return [ScheduledBackup(f"s-{i}", "Succeeded", NOW - timedelta(minutes=10 - i), NOW - timedelta(minutes=9 - i))
            for i in range(count)]


def test_retention_prunes_beyond_keep_last_and_reports_last_backups() -> None:
    running = ScheduledBackup("s-9", "Running", NOW)
    decision = reconcile_schedule(SPEC, DatabaseBackupScheduleStatus(), [*backups(4), running], cron_job_name="s-cron",
                                  last_schedule_time=NOW, generation=1, now=NOW)
    assert sorted(d["name"] for d in decision.delete) == ["s-0", "s-1"]
    status = decision.status
    assert status.retained_backups == 2 and status.pruned_backups == 2
    assert status.last_backup is not None and status.last_backup.name == "s-9"
    assert status.last_successful_backup is not None and status.last_successful_backup.name == "s-3"
    assert status.phase == "Active" and status.cron_job_name == "s-cron"


def test_suspended_schedule_says_so() -> None:
    decision = reconcile_schedule(SPEC.model_copy(update={"suspend": True}), DatabaseBackupScheduleStatus(), [],
                                  cron_job_name="c", last_schedule_time=None, generation=2, now=NOW)
    assert decision.status.phase == "Suspended" and decision.delete == []


def test_trigger_names_backups_from_the_cron_job_scheduled_time() -> None:
    minutes = int(datetime(2026, 11, 23, 2, 0, tzinfo=UTC).timestamp()) // 60
    when = trigger.scheduled_time(f"nightly-cron-{minutes}-x7k2p", NOW)
    assert when == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert trigger.backup_name("nightly", when) == "nightly-20261123-0200"
    assert trigger.scheduled_time("some-pod", NOW) == NOW
    assert len(trigger.backup_name("x" * 80, when)) <= 63


def test_trigger_backup_manifest_comes_from_the_template() -> None:
    body = {"apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseBackupSchedule",
            "metadata": {"name": "nightly", "namespace": "prod", "uid": "u1", "generation": 1},
            "spec": SPEC.to_wire()}
    manifest = trigger.backup_manifest(body, NOW)
    assert manifest["metadata"]["name"] == "nightly-20261125-1200"
    assert manifest["metadata"]["labels"]["team"] == "db"
    assert manifest["metadata"]["labels"]["dbops.io/schedule"] == "nightly"
    assert manifest["metadata"]["annotations"]["dbops.io/parent"] == "DatabaseBackupSchedule/nightly"
    assert manifest["spec"]["storage"] == {"s3": {"bucket": "bkt", "prefix": "", "forcePathStyle": False}}


@pytest.mark.parametrize("schedule", ["0 0 30-31 2 *", "0 0 31 2 *"])
def test_a_schedule_that_never_fires_is_invalid_before_any_cron_job(schedule: str) -> None:
    # "0 0 30-31 2 *" passes admission (a range is not decided in CEL); "0 0 31 2 *" is what a resource stored
    # before the admission rule existed may still hold. Neither may crash the reconcile: InvalidSpec naming it.
    spec = SPEC.model_copy(update={"schedule": schedule})
    with pytest.raises(errors.InvalidSpecError, match=r"^schedule '.*' never fires"):
        reconcile_schedule(spec, DatabaseBackupScheduleStatus(), [], cron_job_name="c", last_schedule_time=None,
                           generation=1, now=NOW)


def test_a_window_that_never_opens_is_invalid_naming_the_field() -> None:
    window = MaintenanceWindow.model_construct(schedule="0 0 31 2 *", duration="2h", time_zone="Europe/Berlin")
    with pytest.raises(errors.InvalidSpecError, match=r"^window\.schedule '0 0 31 2 \*' never fires"):
        window_state(window, NOW)
    with pytest.raises(errors.InvalidSpecError, match=r"^window\.timeZone 'Mars/Base'"):
        window_state(MaintenanceWindow.model_construct(schedule="0 2 * * *", duration="2h", time_zone="Mars/Base"),
                     NOW)
