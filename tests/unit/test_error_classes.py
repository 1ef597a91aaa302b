"""Errors by what they are: API statuses, invalid windows, and the Failed condition tools wait on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.unit.test_reconcile_schedule import SPEC

from dbops import errors
from dbops.api.migration import MaintenanceWindow
from dbops.api.schedule import DatabaseBackupScheduleStatus
from dbops.api.status import ResourceStatus
from dbops.kube.session import ApiError, ApiRejectedError, ApiUnavailableError, is_permanent
from dbops.reconcile.schedule import reconcile_schedule
from dbops.reconcile.window import window_state

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "permanent", "reason"), [
    (400, True, "BadRequest"), (403, True, "Forbidden"), (404, True, "NotFound"), (422, True, "Invalid"),
    (409, False, "ApiUnavailable"), (429, False, "ApiUnavailable"), (500, False, "ApiUnavailable"),
    (503, False, "ApiUnavailable"), (504, False, "ApiUnavailable"), (0, False, "ApiUnavailable"),
])
def test_api_errors_are_classified_by_http_status(status: int, permanent: bool, reason: str) -> None:
    error = ApiError(status, "Job.batch \"x\" is invalid")
    assert is_permanent(status) is permanent
    assert isinstance(error, ApiRejectedError if permanent else ApiUnavailableError)
    assert isinstance(error, errors.PermanentError if permanent else errors.TransientError)
    assert error.status == status and error.reason == reason and error.detail == "Job.batch \"x\" is invalid"


@pytest.mark.parametrize(("window", "message"), [
    ({"schedule": "0 2 * * *", "duration": "2h", "timeZone": "Mars/Base"}, "window.timeZone 'Mars/Base'"),
    ({"schedule": "0 2 * * *", "duration": "2h", "timeZone": "europe/berlin"}, "window.timeZone 'europe/berlin'"),
])
def test_a_window_in_an_unknown_time_zone_is_an_invalid_spec_not_a_traceback(window: dict[str, str],
                                                                           message: str) -> None:
    # Admission may refuse these now; a resource stored before (or a zone the operator's tzdata lacks) still
    # reaches the window check, which must fail it with InvalidSpec, not a ZoneInfoNotFoundError traceback.
    stored = MaintenanceWindow.model_construct(schedule=window["schedule"], duration=window["duration"],
                                               time_zone=window["timeZone"])
    with pytest.raises(errors.InvalidSpecError, match=message):
        window_state(stored, NOW)


def test_failed_sets_a_failed_condition_and_a_new_run_clears_it() -> None:
    status = ResourceStatus()
    status.mark_progressing("Running", "Running", "working")
    assert status.condition("Failed") is None
    status.mark_failed("JobRejected", "the API server rejected Job x")
    failed, ready = status.condition("Failed"), status.condition("Ready")
    assert failed is not None and failed.status == "True" and failed.reason == "JobRejected"
    assert ready is not None and ready.status == "False" and ready.reason == "JobRejected"
    status.phase = "Pending"  # what a migration does when its revision changes
    status.mark_progressing("Running", "Running", "again")
    assert status.condition("Failed") is None


def test_succeeded_has_no_failed_condition() -> None:
    status = ResourceStatus()
    status.mark_succeeded("done")
    assert status.condition("Failed") is None and status.condition("Ready") is not None


def test_a_schedule_whose_cron_job_was_refused_stays_failed_until_its_spec_changes() -> None:
    status = DatabaseBackupScheduleStatus()
    status.mark_failed("CronJobRejected", "the API server rejected CronJob s-cron", generation=1)
    same = reconcile_schedule(SPEC, status, [], cron_job_name="s-cron", last_schedule_time=None, generation=1,
                              now=NOW)
    assert same.status.phase == "Failed" and same.status.condition("Failed") is not None
    changed = reconcile_schedule(SPEC, status, [], cron_job_name="s-cron", last_schedule_time=None, generation=2,
                                 now=NOW)
    assert changed.status.phase == "Active" and changed.status.condition("Failed") is None


def test_a_window_is_open_at_the_very_second_it_starts() -> None:
    window = MaintenanceWindow.model_validate({"schedule": "1 20 * * *", "duration": "30m", "timeZone": "UTC"})
    start = datetime(2026, 11, 29, 20, 1, tzinfo=UTC)
    assert window_state(window, start).open
    assert not window_state(window, start.replace(second=0, minute=0)).open
    assert window_state(window, start.replace(minute=0, second=59)).next_start == start
