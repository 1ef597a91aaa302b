"""Sequence state around a dry run: put back what a rolled-back dry run advanced (``nextval``).

``nextval`` is not transactional, so we snapshot sequences before and put back those that only the dry run
moved (compare-and-set, so a value the application drew meanwhile is never handed out twice)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[Any]

# last_value is NULL when nextval was never called (or we may not read it: then we leave the sequence alone).
_SEQUENCES = """
SELECT s.schemaname, s.sequencename, s.last_value, s.start_value,
       has_sequence_privilege(format('%I.%I', s.schemaname, s.sequencename), 'SELECT,UPDATE')
FROM pg_sequences s
WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
"""


@dataclass(frozen=True)
class SequenceState:
    """One sequence's position: ``last_value`` None means "never called"."""

    last_value: int | None
    start_value: int
    writable: bool


def snapshot(connection: Connection) -> dict[tuple[str, str], SequenceState]:
    """Every user sequence's position."""
    return {(schema, name): SequenceState(last, start, bool(writable))
            for schema, name, last, start, writable in connection.execute(_SEQUENCES).fetchall()}


def restore(connection: Connection, before: dict[tuple[str, str], SequenceState],
            end: dict[tuple[str, str], SequenceState]) -> list[str]:
    """Put back each sequence the dry run moved (``end`` ≠ ``before``) unless someone moved it since.

    Returns the names of moved sequences that could not be put back (someone else drew a value).
    """
    not_restored = []
    for key, at_end in end.items():
        was = before.get(key)
        if was is None or at_end.last_value == was.last_value:
            continue
        name = f"{key[0]}.{key[1]}"
        if not was.writable:
            not_restored.append(name)
            continue
        if at_end.last_value is None:
            not_restored.append(name)
            continue
        # One statement: setval only while the sequence is still where the dry run left it.
        row = connection.execute(
            sql.SQL("SELECT setval(%s::regclass, %s, %s) FROM {} WHERE last_value = %s AND is_called").format(
                sql.Identifier(*key)),
            (sql.Identifier(*key).as_string(connection),
             was.last_value if was.last_value is not None else was.start_value, was.last_value is not None,
             at_end.last_value),
        ).fetchone()
        if row is None:
            not_restored.append(name)
    return not_restored
