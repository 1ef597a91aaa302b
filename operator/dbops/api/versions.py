"""Migration versions (``7``, ``0001``, ``1.2``, ``1_2``) and migration file names: one grammar for CRD and runner."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

# Digit runs joined by '.' or '_' (Flyway writes V1_2__x.sql for version 1.2). Leading zeros do not count and
# trailing zero parts do not either (1.0 is 1), as Flyway compares them.
PATTERN = r"[0-9]+([._][0-9]+)*"
VERSION = re.compile(rf"^{PATTERN}$")
OPTIONAL_PATTERN = rf"^({PATTERN})?$"
MAX_LENGTH = 32

Key = tuple[int, ...]
# Every file the runner reads from a source directory (a ConfigMap's keys are filtered by it): golang-migrate
# NNNN_name.up/down.sql, Flyway V/U/R files and their .conf, Atlas NNNN[_name].sql with its atlas.sum.
# Our own <version>_<name>.up/down.sql takes dotted versions (1.2_x.up.sql; written with dots, never '_').
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
SOURCE_FILE = re.compile(
    rf"^(?:[0-9]+(?:\.[0-9]+)*_{_NAME}\.(?:up|down)\.sql|(?:[VU][0-9][0-9._]*|R)__{_NAME}\.sql(?:\.conf)?"
    rf"|[0-9]+(?:_{_NAME})?\.sql|atlas\.sum)$"
)


def is_version(text: str) -> bool:
    """True when ``text`` is a version (at most 32 characters)."""
    return len(text) <= MAX_LENGTH and bool(VERSION.match(text))


def key(version: str) -> Key:
    """The sort key: the parts as integers, trailing zero parts dropped (``1.0`` = ``1``, ``0`` = ``()``)."""
    if not VERSION.match(version):
        raise ValueError(f"version {version!r} is not digits separated by '.' or '_' (e.g. 7, 0001, 1.2)")
    parts = [int(part) for part in re.split(r"[._]", version)]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def normalise(version: str) -> str:
    """How a version is written in our history: ``1_2`` → ``1.2`` (as Flyway records it); ``0001`` stays."""
    return version.replace("_", ".")


def text(version_key: Key) -> str:
    """A key written as a version (``()`` → ``0``)."""
    return ".".join(str(part) for part in version_key) or "0"


def follows(previous: Key, current: Key) -> bool:
    """True when ``current`` comes right after ``previous`` without a gap: one part bumped by one, deeper
    parts dropped (1 → 2, 1.1 → 1.2, 1.1 → 2), or a first sub-version (1 → 1.1)."""
    if current == (*previous, 1):
        return True
    return any(current == (*previous[:level], previous[level] + 1) for level in range(len(previous)))


def file_name(version: str, name: str, direction: str) -> str:
    """``<version>_<name>.<direction>.sql`` with the version written with dots (``1_2`` → ``1.2_x.up.sql``), so
    the loader reads the version back and not a longer name."""
    return f"{normalise(version)}_{name}.{direction}.sql"


def sequence_problem(entries: Iterable[tuple[str, str]], *, allow_gaps: bool) -> str | None:
    """What is wrong with a set of (version, label) migrations, naming them: a version twice (as compared: 0001 is
    1, 1.0 is 1, 1_2 is 1.2), or a gap unless ``allow_gaps``. None when they can be applied in order."""
    ordered = sorted(((key(version), label) for version, label in entries), key=lambda entry: entry[0])
    for (previous, previous_label), (current, current_label) in itertools.pairwise(ordered):
        if current == previous:
            return f"duplicate migration version {text(current)}: {previous_label} and {current_label}"
        if not allow_gaps and not follows(previous, current):
            return (f"gap in migration versions: {previous_label} is followed by {current_label} "
                    f"(expected version {text((*previous[:-1], previous[-1] + 1) if previous else (1,))}; "
                    "--allow-gaps / spec.allowGaps accepts gaps)")
    return None
