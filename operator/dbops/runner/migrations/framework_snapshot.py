"""Command mode's record of what the framework ran: its history saved before the command, compared after it.

The history is Django's ``django_migrations`` rows, Alembic's revision …; the snapshot lives in a table next to
our history table."""

from __future__ import annotations

import json
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


def save(connection: Connection, table: history.HistoryTable, run: str, framework: str = "auto") -> dict[str, int]:
    """Record the frameworks' histories before the command under ``run``; returns the number of rows each."""
    snapshot = {name: frameworks.history(connection, name) for name in chosen(connection, framework)}
    with connection.transaction():
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
        connection.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (run text PRIMARY KEY, framework text NOT NULL, snapshot jsonb NOT NULL,"
            " taken_at timestamptz NOT NULL DEFAULT now())").format(_table(table)))
        # a run whose command failed never reached verify-db, which drops the snapshot: keep a month of those
        connection.execute(sql.SQL("DELETE FROM {} WHERE taken_at < now() - interval '30 days'").format(_table(table)))
        connection.execute(sql.SQL(
            "INSERT INTO {} (run, framework, snapshot) VALUES (%s, %s, %s) ON CONFLICT (run) DO UPDATE"
            " SET framework = excluded.framework, snapshot = excluded.snapshot, taken_at = now()").format(_table(table)),
            (run, framework, json.dumps(snapshot)))
    return {name: len(rows or []) for name, rows in snapshot.items()}


def load(connection: Connection, table: history.HistoryTable, run: str) -> tuple[str, dict[str, list[str] | None]] | None:
    """(framework flag, snapshot) saved under ``run``, or None when there is none."""
    exists = connection.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
                                (table.schema, TABLE)).fetchone()
    if not exists or not exists[0]:
        return None
    row = connection.execute(sql.SQL("SELECT framework, snapshot FROM {} WHERE run = %s").format(_table(table)),
                             (run,)).fetchone()
    return None if row is None else (str(row[0]), dict(row[1]))


def compare(connection: Connection, table: history.HistoryTable, run: str) -> list[dict[str, Any]] | None:
    """What each framework recorded between the snapshot ``run`` and now (complete lists), the snapshot dropped.

    None when there is no snapshot (the command Job's snapshot step did not run).
    """
    saved = load(connection, table, run)
    if saved is None:
        return None
    framework, before = saved
    names = list(dict.fromkeys([*before, *chosen(connection, framework)]))
    changes = [frameworks.history_change(name, before.get(name), frameworks.history(connection, name))
               for name in names]
    with connection.transaction():
        connection.execute(sql.SQL("DELETE FROM {} WHERE run = %s").format(_table(table)), (run,))
    return changes


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
