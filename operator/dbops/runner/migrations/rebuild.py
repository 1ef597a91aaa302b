"""Running one no-transaction statement again after a failed attempt: its INVALID or NOT VALID leftovers dropped."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import psycopg

from dbops.runner.migrations import failures, leftovers
from dbops.runner.migrations import statements as sqlstatements

Connection = psycopg.Connection[Any]


def execute_rebuilding(connection: Connection, statement: sqlstatements.Statement, rebuilt: list[str]) -> None:
    """Run one statement in autocommit; an INVALID index it names (a failed earlier build) is dropped first."""
    try:
        ref = leftovers.index_created_by(statement)
        invalid = leftovers.invalid_named_index(connection, ref) if ref is not None else None
        if invalid is not None:
            print(f"dbops: dropping INVALID index {invalid[1]} left by an earlier attempt, to rebuild it",
                  file=sys.stderr, flush=True)
            connection.execute(leftovers.drop_statement(invalid[1], concurrently=True))
            rebuilt.append(invalid[1])
        added = leftovers.constraint_added_not_valid_by(statement)
        if added is not None and (dropped := leftovers.drop_not_valid_constraint(connection, added)) is not None:
            print(f"dbops: dropped constraint {dropped}, left NOT VALID by an earlier attempt, to add it again",
                  file=sys.stderr, flush=True)
        unnamed_on = leftovers.unnamed_index_table(statement)
        before = leftovers.table_indexes(connection, unnamed_on) if unnamed_on is not None else set()
        connection.execute(statement.text.encode(), prepare=False)
    except psycopg.Error as error:
        raise failures.StatementFailed(statement, error) from error
    if unnamed_on is not None:
        drop_earlier_builds(connection, unnamed_on, before, rebuilt)


def drop_earlier_builds(connection: Connection, table: str, before: set[int], rebuilt: list[str]) -> None:
    """After an unnamed CREATE INDEX built its index: drop the INVALID twins an earlier attempt left. The
    statement succeeded, so a failed drop is not retried (that would build the index again): the check after
    the migration names what is left."""
    with contextlib.suppress(psycopg.Error):
        for name in leftovers.invalid_twins(connection, table, before):
            print(f"dbops: dropping INVALID index {name}, an earlier attempt's build of the index just built",
                  file=sys.stderr, flush=True)
            connection.execute(leftovers.drop_statement(name, concurrently=True))
            rebuilt.append(name)
