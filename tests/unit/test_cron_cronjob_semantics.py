"""Window and schedule start times agree with the Kubernetes CronJob controller (robfig/cron v3), not croniter's
own reading: ``*/1`` or ``?`` in a day field leaves it unrestricted (both day fields must match), ``N/step`` runs
to the field's end. The oracle below follows robfig/cron v3's parser (getRange, getField, dayMatches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbops import errors
from dbops.api.cron import cron_problem
from dbops.reconcile import window

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
BOUNDS: list[tuple[int, int, dict[str, int]]] = [
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, {n: i + 1 for i, n in enumerate(MONTHS)}),
    (0, 6, {n: i for i, n in enumerate(DAYS)})]
DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
               "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _value(text: str, names: dict[str, int]) -> int:
    return names.get(text.lower()) if text.lower() in names else int(text)  # type: ignore[return-value]


def robfig_field(text: str, bounds: tuple[int, int, dict[str, int]]) -> tuple[set[int], bool]:
    """getField: the values and the star bit (``*``/``?`` without a step above 1)."""
    low, high, names = bounds
    values: set[int] = set()
    star = False
    for expression in text.split(","):
        range_and_step = expression.split("/")
        low_and_high = range_and_step[0].split("-")
        extra = False
        if low_and_high[0] in ("*", "?"):
            start, end, extra = low, high, True
        else:
            start = _value(low_and_high[0], names)
            end = _value(low_and_high[1], names) if len(low_and_high) == 2 else start
        step = 1
        if len(range_and_step) == 2:
            step = int(range_and_step[1])
            if len(low_and_high) == 1:
                end = high  # "N/step" means "N-max/step"
            if step > 1:
                extra = False
        values |= set(range(start, end + 1, step))
        star |= extra
    return values, star


def robfig_next(schedule: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` start times after ``after`` (UTC), searched six years ahead."""
    fields = [robfig_field(text, bounds) for text, bounds in zip(DESCRIPTORS.get(schedule, schedule).split(),
                                                                  BOUNDS, strict=True)]
    (minutes, _), (hours, _), (dom, dom_star), (months, _), (dow, dow_star) = fields
    found: list[datetime] = []
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(366 * 6):
        if day.month in months:
            dom_match, dow_match = day.day in dom, day.isoweekday() % 7 in dow
            if (dom_match and dow_match) if (dom_star or dow_star) else (dom_match or dow_match):
                for hour in sorted(hours):
                    for minute in sorted(minutes):
                        start = day.replace(hour=hour, minute=minute)
                        if start > after:
                            found.append(start)
                            if len(found) == count:
                                return found
        day += timedelta(days=1)
    return found


def operator_next(schedule: str, after: datetime, count: int) -> list[datetime]:
    """What the operator computes (window.fire_times), one start after another."""
    found: list[datetime] = []
    for _ in range(count):
        after = window.fire_times(schedule, "UTC", after)[1].astimezone(UTC)
        found.append(after)
    return found


START = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(("schedule", "first"), [
    ("0 0 1 * */1", ["02-01", "03-01", "04-01"]),     # croniter alone: every day
    ("0 0 */1 * 1", ["01-05", "01-12", "01-19"]),     # croniter alone: every day
    ("0 0 */01 * mon", ["01-05", "01-12", "01-19"]),
    ("0 0 1-5 * */1", ["01-02", "01-03", "01-04", "01-05", "02-01"]),
    ("0 0 1 * ?/1", ["02-01", "03-01", "04-01"]),     # croniter alone: refused
    ("0 0 */2 * */1", ["01-03", "01-05", "01-07"]),
    ("0 0 1,15 * sun", ["01-04", "01-11", "01-15"]),  # neither unrestricted: either day field
])
def test_start_times_are_the_cronjob_controllers(schedule: str, first: list[str]) -> None:
    times = operator_next(schedule, START, len(first))
    assert [t.strftime("%m-%d") for t in times] == first
    assert times == robfig_next(schedule, START.replace(tzinfo=None), len(first)) or \
        [t.replace(tzinfo=None) for t in times] == robfig_next(schedule, START.replace(tzinfo=None), len(first))


_DAY_ATOMS = ["*", "?", "*/1", "*/01", "?/1", "*/2", "?/3", "1-5", "1/2", "5/10", "15", "1", "*,1", "3-4/1"]
_DOW_ATOMS = ["*", "?", "*/1", "*/2", "1-5", "1/2", "0", "6", "MON-FRI", "sun", "*,1", "?/2", "2-4/1"]
_MONTH_ATOMS = ["*", "*/1", "2", "1/3", "JAN-MAR", "feb,apr", "*/4"]


def _field(atoms: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(atoms), min_size=1, max_size=2, unique=True).map(",".join)


_SCHEDULES = st.tuples(st.sampled_from(["0", "15", "*/30"]), st.sampled_from(["0", "12"]), _field(_DAY_ATOMS),
                       _field(_MONTH_ATOMS), _field(_DOW_ATOMS)).map(" ".join).filter(lambda s: cron_problem(s) is None)


@settings(max_examples=300, deadline=None)
@given(_SCHEDULES)
def test_every_admitted_day_combination_fires_when_the_cronjob_would(schedule: str) -> None:
    expected = robfig_next(schedule, START.replace(tzinfo=None), 6)
    if not expected:
        with pytest.raises(errors.InvalidSpecError, match="never fires"):
            operator_next(schedule, START, 1)
        return
    assert [t.replace(tzinfo=None) for t in operator_next(schedule, START, len(expected))] == expected, schedule


def test_a_february_30th_with_star_slash_one_is_refused_at_admission() -> None:
    """robfig needs both day fields when day-of-week is */1: 30 Feb never comes (the CEL rule and its twin)."""
    assert cron_problem("0 0 30 2 */1") is not None and cron_problem("0 0 30 2 */2") is None
