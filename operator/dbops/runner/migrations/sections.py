"""goose and dbmate single-file migrations: the up and down sections of one file, split at their markers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbops import errors
from dbops.runner.migrations import statements as sqlstatements

# ``-- +goose Up`` / ``-- +goose Down`` (goose), ``-- migrate:up`` / ``-- migrate:down [options]`` (dbmate).
MARKER = re.compile(
    r"^[ \t]*--[ \t]*(?:\+goose[ \t]+(?P<goose>up|down)|migrate:(?P<dbmate>up|down))(?![A-Za-z0-9_])[^\n]*$",
    re.MULTILINE | re.IGNORECASE,
)
# goose's directive covers the whole file (both sections), wherever it stands.
GOOSE_NO_TRANSACTION = re.compile(r"^\s*--\s*\+goose\s+NO\s+TRANSACTION\s*$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    """One direction's text (from its marker line up to the next marker) and the file line it starts on."""

    text: str
    first_line: int


@dataclass(frozen=True)
class Sections:
    """The up and down sections of a marked file; ``no_transaction``: goose's directive for the whole file."""

    up: Section
    down: Section | None
    no_transaction: bool


def has_markers(sql: str) -> bool:
    """True when the text carries a goose or dbmate Up/Down marker."""
    return MARKER.search(sql) is not None


def split(sql: str, where: str) -> Sections | None:
    """The file's sections, or None when it has no marker (a plain up file). ``where`` names it in errors.

    Text before the first marker must be comments (goose and dbmate refuse statements there too); a file with
    only a Down marker has its up section before it. goose's ``StatementBegin``/``StatementEnd`` need nothing:
    the statement splitter already keeps dollar- and single-quoted bodies whole, and the markers are comments.
    """
    markers = list(MARKER.finditer(sql))
    if not markers:
        return None
    directions = [(m["goose"] or m["dbmate"]).lower() for m in markers]
    for position, direction in enumerate(directions):
        if direction in directions[:position]:
            raise errors.InvalidSpecError(
                f"{where}: a second '{markers[position].group(0).strip()}' marker on line "
                f"{_line_of(sql, markers[position].start())}; a file has one up and at most one down section"
            )
    found: dict[str, Section] = {}
    if "up" not in directions:  # only a Down marker: what comes before it is the up section
        found["up"] = Section(sql[:markers[0].start()], 1)
    elif sqlstatements.split_statements(sql[:markers[0].start()]):
        raise errors.InvalidSpecError(
            f"{where}: SQL before the '{markers[0].group(0).strip()}' marker on line "
            f"{_line_of(sql, markers[0].start())}; put it in the up or down section"
        )
    for position, (marker, direction) in enumerate(zip(markers, directions, strict=True)):
        # Leading comments stay with the first section, so its line numbers are the file's.
        start = 0 if position == 0 and direction == "up" else marker.start()
        end = markers[position + 1].start() if position + 1 < len(markers) else len(sql)
        found[direction] = Section(sql[start:end], _line_of(sql, start))
    return Sections(up=found["up"], down=found.get("down"),
                    no_transaction=bool(GOOSE_NO_TRANSACTION.search(sql)))


def _line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1
