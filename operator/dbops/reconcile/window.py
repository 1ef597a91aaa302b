"""Maintenance windows: whether one is open now, and when the next one starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from dbops import errors
from dbops.api.common import parse_duration
from dbops.api.migration import MaintenanceWindow


@dataclass(frozen=True)
class WindowState:
    """Whether a window is open at a moment, and the next start."""

    open: bool
    next_start: datetime
    closes_at: datetime | None = None


def window_state(window: MaintenanceWindow, now: datetime) -> WindowState:
    """The state of a maintenance window at ``now`` (an aware datetime)."""
    try:
        zone = ZoneInfo(window.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidSpecError(f"window.timeZone {window.time_zone!r} is not an IANA time zone "
                                      "(e.g. Europe/Berlin, UTC)") from None
    if not croniter.is_valid(window.schedule):
        raise errors.InvalidSpecError(f"window.schedule {window.schedule!r} is not a valid cron expression")
    local_now = now.astimezone(zone)
    length = timedelta(seconds=parse_duration(window.duration))
    # get_prev is strictly before its base: from one second later, a window starting exactly now counts as open
    previous_start: datetime = croniter(window.schedule, local_now + timedelta(seconds=1)).get_prev(datetime)
    next_start: datetime = croniter(window.schedule, local_now).get_next(datetime)
    closes_at = previous_start + length
    if previous_start <= local_now < closes_at:
        return WindowState(True, next_start, closes_at)
    return WindowState(False, next_start)
