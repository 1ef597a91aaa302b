"""The one duration grammar (``0``, ``500ms``, ``1h30m``, ``2w``) of the API and every runner flag.

Without pydantic, so runner commands that parse durations do not import the API models (P6: CLI start-up)."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^(0|([0-9]+(ms|s|m|h|d|w))+)$"
"""The one duration grammar of the API and of every runner flag: ``0``, ``500ms``, ``90s``, ``1h30m``, ``2w``."""
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
DURATION_MAX_LENGTH = 32
"""The longest duration text the CRDs admit; the runner refuses longer ones too (one grammar for both)."""
POSTGRES_MAX_MS = 2_147_483_647
"""The largest ``lock_timeout``/``statement_timeout`` PostgreSQL accepts (INT_MAX milliseconds, ~24.8 days)."""


def duration_milliseconds(value: str) -> int:
    """Milliseconds in a duration of the API's grammar; ValueError naming the grammar otherwise."""
    if len(value) > DURATION_MAX_LENGTH:
        raise ValueError(f"invalid duration {value[:40]!r}: at most {DURATION_MAX_LENGTH} characters")
    parts = _DURATION_PART.findall(value)
    if value != "0" and (not parts or "".join(n + u for n, u in parts) != value):
        raise ValueError(f"invalid duration {value!r}: use numbers with ms, s, m, h, d or w, e.g. 5s, 30d or 1h30m")
    return sum(int(number) * _DURATION_MS[unit] for number, unit in parts)


def parse_duration(value: str) -> float:
    """Seconds in a duration such as ``90s``, ``5m``, ``2h``, ``30d`` or ``1h30m``."""
    return duration_milliseconds(value) / 1000


def postgres_duration(value: str) -> str:
    """A duration as a PostgreSQL ``lock_timeout``/``statement_timeout`` value (``5400s``, ``250ms``).

    The result is in the API's grammar too. Raises ValueError above PostgreSQL's limit, naming it.
    """
    milliseconds = duration_milliseconds(value)
    if milliseconds > POSTGRES_MAX_MS:
        raise ValueError(f"duration {value!r} is longer than PostgreSQL allows for a timeout (at most 24d20h31m23s)")
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"
