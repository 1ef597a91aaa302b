"""Command mode's framework history: ``dbops migrate snapshot`` and ``verify-db --snapshot-run``.

``migrate snapshot`` records the history before the command (the command Job's init container);
``verify-db --snapshot-run`` reports what the command added and removed (complete in the log, bounded in the
result and so in status)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from dbops import errors
from dbops.cli import migrate_output
from dbops.runner import result
from dbops.runner.migrations import connect, framework_snapshot, frameworks, history

HELP = "record the framework's migration history before a command-mode run (for verify-db --snapshot-run)"


def register(actions: argparse._SubParsersAction[Any]) -> None:
    """Add ``migrate snapshot``."""
    parser = actions.add_parser("snapshot", help=HELP)
    connect.add_connection_arguments(parser)
    parser.add_argument("--run", dest="run_id", required=True, help="the run's id (the DatabaseMigration revision)")
    parser.add_argument("--history-table", default=history.DEFAULT_TABLE,
                        help="the snapshot table goes into this table's schema (default %(default)s)")
    parser.add_argument("--framework", choices=frameworks.FRAMEWORKS, default="auto",
                        help="whose history to record (default: every framework whose history table exists)")
    migrate_output.add_arguments(parser)
    parser.set_defaults(run=run_snapshot)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``verify-db --snapshot-run``."""
    parser.add_argument("--snapshot-run", default="",
                        help="report what the framework recorded since `migrate snapshot --run` with this id")


def run_snapshot(args: argparse.Namespace) -> int:
    """Record the snapshot. A failure to write it is a warning, not a failed run: the history is a report."""
    name = "migrate snapshot"
    try:
        table = history.HistoryTable.parse(args.history_table)
        with connect.session(args) as connection, connect.translated_errors("recording the framework history"):
            counts = framework_snapshot.save(connection, table, args.run_id, args.framework)
    except errors.InvalidSpecError as error:
        return migrate_output.publish(result.failure(name, error), args, f"dbops {name} failed: {error}")
    except (errors.DbopsError, psycopg.Error) as error:
        message = f"the framework history was not recorded ({error}); status will not list what the command ran"
        return migrate_output.publish(result.success(name, message, recorded=False), args, f"dbops {name}: {message}")
    shown = ", ".join(f"{framework}: {count} rows" for framework, count in counts.items()) or "no framework history"
    document = result.success(name, f"recorded {shown}", recorded=True, frameworks=counts)
    return migrate_output.publish(document, args, f"dbops {name}: {document['message']}")


def snapshot_table(args: argparse.Namespace) -> str:
    """The snapshot table (left out of row counts)."""
    return f"{history.HistoryTable.parse(args.history_table).schema}.{framework_snapshot.TABLE}"


def report(connection: psycopg.Connection[Any], args: argparse.Namespace) -> dict[str, Any]:
    """``{"frameworkHistory": [...]}`` for the result (bounded), the complete lists on stderr; {} when not asked."""
    run = getattr(args, "snapshot_run", "")
    if not run:
        return {}
    changes = framework_snapshot.compare(connection, history.HistoryTable.parse(args.history_table), run)
    if changes is None:
        return {"frameworkHistory": [{"framework": "unknown", "note": "no snapshot was recorded before the command "
                                      "(see the command Job's snapshot container); what it ran is not known"}]}
    for change in changes:
        print(f"dbops: framework history {json.dumps(change, sort_keys=True)}", file=sys.stderr, flush=True)
    return {"frameworkHistory": [framework_snapshot.bounded(change) for change in changes]}


def summary(changes: list[dict[str, Any]]) -> str:
    """``django: 2 applied, 0 unapplied`` / ``alembic: revision a → b`` for messages."""
    parts = []
    for change in changes:
        if "addedCount" in change:
            parts.append(f"{change['framework']}: {change['addedCount']} applied, {change['removedCount']} unapplied")
        elif "before" in change:
            parts.append(f"{change['framework']}: revision {change['before']} → {change['after']}")
    return "; ".join(parts)
