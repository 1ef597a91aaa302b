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


_DAYS = {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


def _day_field(text: str, low: int, high: int, names: dict[str, int]) -> tuple[list[int], bool]:
    """robfig/cron v3's getField for a day field: its values, and whether it is unrestricted (``*`` or ``?``
    without a step above 1, in any comma part)."""
    values: set[int] = set()
    unrestricted = False
    for part in text.split(","):
        range_and_step = part.split("/")
        bounds = range_and_step[0].split("-")
        star = bounds[0] in ("*", "?")
        first = low if star else _number(bounds[0], names)
        last = high if star else _number(bounds[-1], names)
        step = int(range_and_step[1]) if len(range_and_step) == 2 else 1
        if len(range_and_step) == 2 and len(bounds) == 1:
            last = high  # "N/step" runs to the end of the field
        values.update(range(first, last + 1, step))
        unrestricted = unrestricted or (star and step == 1)
    return sorted(values), unrestricted


def _number(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else int(text)


def cronjob_reads(schedule: str) -> str:
    """The schedule as croniter must read it to fire when a CronJob (robfig/cron v3) fires.

    robfig reads a day-of-month or day-of-week field holding ``*`` or ``?`` without a step above 1 (``*/1``,
    ``?``, ``*,1``) as unrestricted, and then needs both day fields to match; otherwise either may. croniter
    reads ``*/1`` as restricted (``0 0 1 * */1`` fired daily instead of monthly), refuses ``?/N`` and treats a
    field covering every day as unrestricted. The day fields are therefore written out: ``*`` where robfig
    leaves them unrestricted (or where either covers every day and either may match), else their values.
    """
    fields = schedule.split()
    if len(fields) != 5:
        return schedule  # @daily and friends mean the same to both
    dom, dom_free = _day_field(fields[2], 1, 31, {})
    dow, dow_free = _day_field(fields[4], 0, 6, _DAYS)
    if not (dom_free or dow_free) and (len(dom) == 31 or len(dow) == 7):
        dom_free = dow_free = True  # either may match, and one always does
    fields[2] = "*" if dom_free else ",".join(map(str, dom))
    fields[4] = "*" if dow_free else ",".join(map(str, dow))
    return " ".join(fields)


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
    readable = cronjob_reads(schedule)
    if not croniter.is_valid(readable):
        raise errors.InvalidSpecError(f"{field}schedule {schedule!r} is not a valid cron expression")
    local_now = now.astimezone(zone)
    try:
        # get_prev is strictly before its base: from one second later, a start exactly now counts
        previous_start: datetime = croniter(readable, local_now + timedelta(seconds=1)).get_prev(datetime)
        next_start: datetime = croniter(readable, local_now).get_next(datetime)
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
