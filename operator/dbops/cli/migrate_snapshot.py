"""Command mode's snapshot: ``dbops migrate snapshot`` and ``verify-db --snapshot-run``.

``migrate snapshot`` records the framework's history before the command (the command Job's init container) and,
when asked, the row counts ``rowCounts`` compares and the sizes ``status.sizes`` shows; ``verify-db
--snapshot-run`` reports what the command added and removed (complete in the log, bounded in the result and so
in status) and compares the counts and sizes with the database after the command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from dbops import errors
from dbops.cli import migrate_output
from dbops.runner import relation_sizes, result, row_counts
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
                        help="whose history to record and whose bookkeeping tables to leave out of row counts "
                             "(default: every framework whose history table exists; every known set)")
    parser.add_argument("--row-counts", action="store_true",
                        help="also count the rows verify-db's rowCounts compares: --row-count-tables, else every "
                             "user table except the history, snapshot and bookkeeping tables (at most "
                             f"{row_counts.MAX_TABLES} tables, by name; the rest are named as not counted)")
    parser.add_argument("--row-count-tables", default="",
                        help="count only these comma-separated [schema.]table")
    add_guard_argument(parser)
    parser.add_argument("--sizes", action="store_true",
                        help="also record table and index sizes and index scans (verify-db's sizes before/after)")
    migrate_output.add_arguments(parser)
    parser.set_defaults(run=run_snapshot)


def add_guard_argument(parser: argparse.ArgumentParser) -> None:
    """``--row-count-exact-max-mb`` (snapshot and verify-db)."""
    parser.add_argument("--row-count-exact-max-mb", type=float, default=row_counts.DEFAULT_EXACT_MAX_MB,
                        help="count rows exactly (count(*)) only in tables up to this size in MiB, estimate larger "
                             "ones from the statistics (pg_stat_user_tables.n_live_tup; default %(default)g; "
                             "0 = count every table exactly)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``verify-db --snapshot-run``."""
    parser.add_argument("--snapshot-run", default="",
                        help="report what the framework recorded since `migrate snapshot --run` with this id, and "
                             "compare the row counts and sizes recorded then")
    add_guard_argument(parser)


def run_snapshot(args: argparse.Namespace) -> int:
    """Record the snapshot. A failure to write it is a warning, not a failed run: the history is a report."""
    name = "migrate snapshot"
    try:
        table = history.HistoryTable.parse(args.history_table)
        with connect.session(args) as connection, connect.translated_errors("recording the framework history"):
            measures = measure(connection, args)
            counts = framework_snapshot.save(connection, table, args.run_id, args.framework, measures)
    except errors.InvalidSpecError as error:
        return migrate_output.publish(result.failure(name, error), args, f"dbops {name} failed: {error}")
    except (errors.DbopsError, psycopg.Error) as error:
        message = f"the framework history was not recorded ({error}); status will not list what the command ran"
        return migrate_output.publish(result.success(name, message, recorded=False), args, f"dbops {name}: {message}")
    shown = [", ".join(f"{framework}: {count} rows" for framework, count in counts.items()) or "no framework history"]
    extra: dict[str, Any] = {}
    if "rowCounts" in measures:
        counted = row_counts.RowCounts.from_wire(measures["rowCounts"])
        extra["rowCountTables"] = len(counted.counts)
        shown.append(f"row counts of {len(counted.counts)} tables ({len(counted.estimated)} estimated"
                     + (f", {counted.omitted} more not counted" if counted.omitted else "") + ")")
    if "sizes" in measures:
        shown.append(f"sizes of {len(measures['sizes']['relations'])} relations")
    document = result.success(name, "recorded " + "; ".join(shown), recorded=True, frameworks=counts, **extra)
    return migrate_output.publish(document, args, f"dbops {name}: {document['message']}")


def measure(connection: psycopg.Connection[Any], args: argparse.Namespace) -> dict[str, Any]:
    """The row counts and sizes asked for, in their compact snapshot form."""
    measures: dict[str, Any] = {}
    if args.row_counts:
        counted = row_counts.count(connection, excluded_tables(args), only=row_counts.parse_tables(args.row_count_tables),
                                   exact_max_bytes=row_counts.exact_max_bytes(args.row_count_exact_max_mb),
                                   limit=row_counts.MAX_TABLES)
        measures["rowCounts"] = counted.to_wire()
    if args.sizes:
        measures["sizes"] = relation_sizes.to_wire(relation_sizes.snapshot(connection))
    return measures


def snapshot_table(args: argparse.Namespace) -> str:
    """The snapshot table (left out of row counts)."""
    return f"{history.HistoryTable.parse(args.history_table).schema}.{framework_snapshot.TABLE}"


def excluded_tables(args: argparse.Namespace) -> frozenset[str]:
    """What row counts leave out, before and after the command alike: the bookkeeping tables of ``--framework``,
    our history table and the snapshot table."""
    return frameworks.bookkeeping_tables(args.framework) | {str(history.HistoryTable.parse(args.history_table)),
                                                            snapshot_table(args)}


def load(connection: psycopg.Connection[Any], args: argparse.Namespace) -> framework_snapshot.Snapshot | None:
    """The snapshot of ``--snapshot-run`` (None when not asked or not recorded)."""
    run = getattr(args, "snapshot_run", "")
    return framework_snapshot.load(connection, history.HistoryTable.parse(args.history_table), run) if run else None


def drop(connection: psycopg.Connection[Any], args: argparse.Namespace) -> None:
    """Remove the snapshot of ``--snapshot-run`` once verified."""
    framework_snapshot.drop(connection, history.HistoryTable.parse(args.history_table), args.snapshot_run)


def counts_before(snapshot: framework_snapshot.Snapshot | None) -> row_counts.RowCounts | None:
    """The row counts recorded before the command (None when none were)."""
    recorded = (snapshot.measures if snapshot else {}).get("rowCounts")
    return row_counts.RowCounts.from_wire(recorded) if isinstance(recorded, dict) else None


def sizes_before(snapshot: framework_snapshot.Snapshot | None) -> tuple[dict[str, relation_sizes.Relation] | None, int]:
    """(relations recorded before the command or None, how many the snapshot left out)."""
    recorded = (snapshot.measures if snapshot else {}).get("sizes")
    return relation_sizes.from_wire(recorded) if isinstance(recorded, dict) else (None, 0)


def report(connection: psycopg.Connection[Any], args: argparse.Namespace,
           snapshot: framework_snapshot.Snapshot | None) -> dict[str, Any]:
    """``{"frameworkHistory": [...]}`` for the result (bounded), the complete lists on stderr; {} when not asked."""
    if not getattr(args, "snapshot_run", ""):
        return {}
    if snapshot is None:
        return {"frameworkHistory": [{"framework": "unknown", "note": "no snapshot was recorded before the command "
                                      "(see the command Job's snapshot container); what it ran is not known"}]}
    changes = framework_snapshot.history_changes(connection, snapshot)
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
