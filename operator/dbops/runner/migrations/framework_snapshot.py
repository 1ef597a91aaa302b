"""Command mode's snapshot before the command: the framework's history, and (when asked) row counts and sizes.

The history is Django's ``django_migrations`` rows, Alembic's revision …; row counts and relation sizes are what
the verify step compares after the command. The snapshot lives in a table next to our history table (a row per
run), so it travels from the command Job's init container to the verify Job without any size limit of its own;
it is bounded all the same (row_counts.MAX_TABLES, relation_sizes.MAX_KEPT)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from dbops.runner.migrations import frameworks, history

Connection = psycopg.Connection[Any]
TABLE = "dbops_framework_snapshots"
MAX_NAMES = 20  # per list in the result (and so in status); the counts are always complete


def _table(table: history.HistoryTable) -> sql.Composable:
    return sql.Identifier(table.schema, TABLE)


def chosen(connection: Connection, framework: str) -> list[str]:
    """The frameworks to follow: the one named, or (auto) each whose history table exists."""
    if framework == "none":
        return []
    if framework != "auto":
        return [framework]
    return [name for name in frameworks.BOOKKEEPING if frameworks.history(connection, name) is not None]


@dataclass(frozen=True)
class Snapshot:
    """What was recorded before the command of one run."""

    framework: str
    """The --framework flag it was taken with."""
    histories: dict[str, list[str] | None]
    """Each followed framework's history (None: its table did not exist yet)."""
    measures: dict[str, Any] = field(default_factory=dict)
    """``rowCounts`` (row_counts.RowCounts.to_wire) and ``sizes`` (relation_sizes.to_wire), when asked for."""


def save(connection: Connection, table: history.HistoryTable, run: str, framework: str = "auto",
         measures: dict[str, Any] | None = None) -> dict[str, int]:
    """Record the frameworks' histories (and ``measures``) before the command under ``run``; returns the number
    of history rows of each framework."""
    snapshot = {name: frameworks.history(connection, name) for name in chosen(connection, framework)}
    with connection.transaction():
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
        connection.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (run text PRIMARY KEY, framework text NOT NULL, snapshot jsonb NOT NULL,"
            " taken_at timestamptz NOT NULL DEFAULT now())").format(_table(table)))
        # the table may predate the measures (a snapshot table created by an earlier version)
        connection.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS measures jsonb").format(_table(table)))
        # a run whose command failed never reached verify-db, which drops the snapshot: keep a month of those
        connection.execute(sql.SQL("DELETE FROM {} WHERE taken_at < now() - interval '30 days'").format(_table(table)))
        connection.execute(sql.SQL(
            "INSERT INTO {} (run, framework, snapshot, measures) VALUES (%s, %s, %s, %s) ON CONFLICT (run) DO UPDATE"
            " SET framework = excluded.framework, snapshot = excluded.snapshot, measures = excluded.measures,"
            " taken_at = now()").format(_table(table)),
            (run, framework, json.dumps(snapshot), json.dumps(measures or {}, separators=(",", ":"))))
    return {name: len(rows or []) for name, rows in snapshot.items()}


def load(connection: Connection, table: history.HistoryTable, run: str) -> Snapshot | None:
    """The snapshot saved under ``run``, or None when there is none."""
    exists = connection.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
                                (table.schema, TABLE)).fetchone()
    if not exists or not exists[0]:
        return None
    row = connection.execute(sql.SQL("SELECT framework, snapshot, to_jsonb(t) -> 'measures' FROM {} t "
                                     "WHERE run = %s").format(_table(table)), (run,)).fetchone()
    return None if row is None else Snapshot(str(row[0]), dict(row[1]), dict(row[2] or {}))


def history_changes(connection: Connection, snapshot: Snapshot) -> list[dict[str, Any]]:
    """What each framework recorded between the snapshot and now (complete lists)."""
    names = list(dict.fromkeys([*snapshot.histories, *chosen(connection, snapshot.framework)]))
    return [frameworks.history_change(name, snapshot.histories.get(name), frameworks.history(connection, name))
            for name in names]


def drop(connection: Connection, table: history.HistoryTable, run: str) -> None:
    """Remove the snapshot of ``run`` (once the verify step has used it)."""
    with connection.transaction():
        connection.execute(sql.SQL("DELETE FROM {} WHERE run = %s").format(_table(table)), (run,))


def bounded(change: dict[str, Any], limit: int = MAX_NAMES) -> dict[str, Any]:
    """At most ``limit`` names per list, with the complete counts and a note saying what was left out."""
    if "added" not in change:
        return change
    result = dict(change, addedCount=len(change["added"]), removedCount=len(change["removed"]))
    cut = []
    for key in ("added", "removed"):
        if len(change[key]) > limit:
            result[key] = change[key][:limit]
            cut.append(f"{len(change[key]) - limit} more {key}")
    if cut:
        result["note"] = (f"{' and '.join(cut)} not shown; the verify Job's log holds the complete lists")
    return result
