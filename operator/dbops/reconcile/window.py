"""Maintenance windows: whether one is open now, and when the next one starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from dbops import errors
from dbops.api.common import parse_duration
from dbops.api.migration import MaintenanceWindow


@dataclass(frozen=True)
class WindowState:
    """Whether a window is open at a moment, and the next start."""

    open: bool
    next_start: datetime
    closes_at: datetime | None = None


def fire_times(schedule: str, time_zone: str, now: datetime, *, field: str = "") -> tuple[datetime, datetime]:
    """The last start at or before ``now`` and the next one after it, in ``time_zone``.

    InvalidSpecError naming ``{field}schedule``/``{field}timeZone`` when the zone is unknown or the schedule
    never fires: admission refuses the decidable cases (Feb 30); a range such as ``30-31 2`` is caught here.
    """
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidSpecError(f"{field}timeZone {time_zone!r} is not an IANA time zone "
                                      "(e.g. Europe/Berlin, UTC)") from None
    if not croniter.is_valid(schedule):
        raise errors.InvalidSpecError(f"{field}schedule {schedule!r} is not a valid cron expression")
    local_now = now.astimezone(zone)
    try:
        # get_prev is strictly before its base: from one second later, a start exactly now counts
        previous_start: datetime = croniter(schedule, local_now + timedelta(seconds=1)).get_prev(datetime)
        next_start: datetime = croniter(schedule, local_now).get_next(datetime)
    except CroniterBadDateError:
        raise errors.InvalidSpecError(f"{field}schedule {schedule!r} never fires: no listed day of month exists "
                                      "in any listed month (e.g. Feb 30)") from None
    return previous_start, next_start


def window_state(window: MaintenanceWindow, now: datetime) -> WindowState:
    """The state of a maintenance window at ``now`` (an aware datetime)."""
    previous_start, next_start = fire_times(window.schedule, window.time_zone, now, field="window.")
    local_now = now.astimezone(next_start.tzinfo)
    closes_at = previous_start + timedelta(seconds=parse_duration(window.duration))
    if previous_start <= local_now < closes_at:
        return WindowState(True, next_start, closes_at)
    return WindowState(False, next_start)
