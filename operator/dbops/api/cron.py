"""The cron grammar the API admits: what a Kubernetes CronJob (robfig/cron) and croniter both accept."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {**{name: i + 1 for i, name in enumerate(_MONTHS)}, **{name: i for i, name in enumerate(_DAYS)}}
_STEP = r"(0?[1-9]|[1-9][0-9])"


def _field(number: str, names: tuple[str, ...] = (), *, question: bool = False) -> str:
    """One field: comma-separated ``*``, a value or a range (numbers, or names of months/days), each with a step."""
    values = f"({number})-({number})|({number})"
    if names:
        name = "(?i:" + "|".join(names) + ")"
        values = f"{name}-{name}|{name}|{values}"
    atom = rf"(\*{'|[?]' if question else ''}|{values})(/{_STEP})?"
    return f"({atom})(,({atom}))*"


_FIELDS = (
    _field("0?[0-9]|[1-5][0-9]"),                                 # minute 0-59
    _field("0?[0-9]|1[0-9]|2[0-3]"),                              # hour 0-23
    _field("0?[1-9]|[12][0-9]|3[01]", question=True),             # day of month 1-31
    _field("0?[1-9]|1[0-2]", _MONTHS),                            # month 1-12 or JAN-DEC
    _field("0?[0-6]", _DAYS, question=True),                      # day of week 0-6 or SUN-SAT
)
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|" + r"[ \t]+".join(_FIELDS) + ")$"
)
_NAME_MAP = "{" + ", ".join(f"'{name}': {number}" for name, number in _NAMES.items()) + "}"
CRON_RANGE_RULE = (
    "self.findAll('[0-9]+-[0-9]+').all(r, int(r.split('-')[0]) <= int(r.split('-')[1])) && "
    f"self.findAll('[A-Za-z]{{3}}-[A-Za-z]{{3}}').all(r, {_NAME_MAP}[r.substring(0, 3).lowerAscii()] <= "
    f"{_NAME_MAP}[r.substring(4, 7).lowerAscii()])"
)
_GRAMMAR = re.compile(CRON_PATTERN)

# A schedule that never fires, where that is decidable from the text: day of week *, ? or */1 (robfig/cron: the
# day of month must then match), days of month and months plain lists, and no listed day exists in a listed month: only 30 and 31
# in February, or only 31 in months of at most 30 days (Feb 29 fires in leap years).
_FEB = "(0?2|(?i:feb))"
_SHORT = "(0?[2469]|11|(?i:feb|apr|jun|sep|nov))"
NEVER_FIRES_PATTERN = (
    rf"^[^ \t]+[ \t]+[^ \t]+[ \t]+((30|31)(,(30|31))*[ \t]+{_FEB}(,{_FEB})*|31(,31)*[ \t]+{_SHORT}(,{_SHORT})*)"
    r"[ \t]+[*?](/0?1)?$"
)
CRON_FIRES_RULE = f"!self.matches(r'{NEVER_FIRES_PATTERN}')"
CRON_FIRES_MESSAGE = "the schedule never fires: no listed day of month exists in any listed month (e.g. Feb 30)"


def never_fires(expression: str) -> bool:
    """Whether CRON_FIRES_RULE refuses ``expression`` (its Python twin: the same pattern)."""
    return re.search(NEVER_FIRES_PATTERN, expression) is not None


def cron_problem(expression: str) -> str | None:
    """Why a cron expression is refused (None when admitted): the Python twin of the pattern and CEL rule."""
    if not _GRAMMAR.fullmatch(expression):
        return ("must be 5 fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, "
                "day of week 0-6 or SUN-SAT) or @hourly/@daily/@weekly/@monthly/@yearly")
    for low, high in re.findall(r"([0-9]+)-([0-9]+)", expression):
        if int(low) > int(high):
            return f"range {low}-{high} runs backwards"
    for low, high in re.findall(r"([A-Za-z]{3})-([A-Za-z]{3})", expression):
        if _NAMES[low.lower()] > _NAMES[high.lower()]:
            return f"range {low}-{high} runs backwards"
    if never_fires(expression):
        return "never fires: no listed day of month exists in any listed month (e.g. Feb 30)"
    return None


def _check(expression: str) -> str:
    problem = cron_problem(expression)
    if problem:
        raise ValueError(f"cron expression {expression!r} {problem}")
    return expression


CronSchedule = Annotated[
    str,
    StringConstraints(pattern=CRON_PATTERN, max_length=128),
    AfterValidator(_check),
    Field(json_schema_extra={"x-kubernetes-validations": [
        {"rule": CRON_RANGE_RULE, "message": "cron ranges must run from low to high, e.g. 1-5 or MON-FRI"},
        {"rule": CRON_FIRES_RULE, "message": CRON_FIRES_MESSAGE},
    ]}),
]
"""A cron expression: five fields within their ranges, or an @hourly-style shorthand."""
