"""The ``dbops restore`` command: restore a stored backup into a database, checksum first."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from dbops import errors
from dbops.runner import command, connection, restore, restore_checks, restore_tables, result, storage


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``restore`` subcommand."""
    parser = subparsers.add_parser(
        "restore", help="restore a stored backup into a database",
        description="Verify the backup's checksums, then restore it into the connection's database, stopping "
        "at the first error, then compare row counts with the manifest.",
    )
    parser.add_argument("--from", dest="source", required=True, metavar="LOCATION",
                        help="the backup folder or its manifest.json (s3://… or a directory)")
    connection.add_arguments(parser)
    storage.add_arguments(parser)
    parser.add_argument("--mode", choices=restore.MODES, default="full")
    parser.add_argument("--table", action="append", default=[], metavar="[SCHEMA.]TABLE",
                        help="a table to restore in mode tables (repeatable)")
    parser.add_argument("--strategy", choices=restore.STRATEGIES, default="replace",
                        help="mode tables: replace (the rows become the backup's; needs --confirm-overwrite), merge "
                        "(insert the backup's missing rows, keep every current row, report rows that differ) or "
                        "missing-only (insert the backup's missing rows); every foreign key into and out of the "
                        "tables is checked before commit")
    parser.add_argument("--on-conflict", choices=restore.ON_CONFLICT, default="keep",
                        help="strategy merge: keep rows that differ from the backup, or overwrite them with the "
                        "backup's (needs --confirm-overwrite)")
    parser.add_argument("--create", action="store_true", help="create the target database if it does not exist")
    parser.add_argument("--clean", action="store_true", help="drop objects before recreating them")
    parser.add_argument("--recreate", action="store_true",
                        help="drop and re-create the target database (same owner, encoding and locale) after the "
                        "checksums are verified, so objects not in the backup disappear too; mode full only, needs "
                        "--confirm-overwrite DBNAME and CREATEDB")
    parser.add_argument("--maintenance-dbname", default="postgres", metavar="DBNAME",
                        help="database connected to for --recreate and --terminate-connections (default: postgres)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="parallel pg_restore jobs (> 1 downloads to a temporary file first)")
    parser.add_argument("--confirm-overwrite", default="", metavar="DBNAME",
                        help="required (equal to the target database name) to restore over a non-empty database")
    parser.add_argument("--terminate-connections", action="store_true",
                        help="terminate other sessions on the target first")
    parser.add_argument("--no-row-count-check", action="store_true")
    parser.add_argument("--checks-json", metavar="JSON",
                        help='SQL checks run against the restored database: [{"name", "sql", "expect": {rows|min|'
                        'max|equals}}]')
    parser.add_argument("--checks-file", metavar="FILE", help="the same checks as a JSON or YAML file")
    parser.add_argument("--no-owner", action="store_true", help="skip ownership and privileges")
    parser.add_argument("--pg-bin-dir", metavar="DIR")
    parser.add_argument("--result-path", metavar="PATH")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    def work() -> tuple[dict[str, Any], str]:
        started = datetime.datetime.now(datetime.UTC)
        checks = restore_checks.load_checks(args.checks_json, args.checks_file)
        store = storage.open_storage(storage.backup_location(args.source), storage.options_from_args(args))
        settings = connection.from_args(args)
        outcome = restore.run_restore(store, settings, restore.RestoreOptions(
            mode=args.mode, tables=tuple(args.table), create=args.create, clean=args.clean, recreate=args.recreate,
            maintenance_dbname=args.maintenance_dbname, jobs=args.jobs, confirm_overwrite=args.confirm_overwrite,
            terminate_connections=args.terminate_connections, row_count_check=not args.no_row_count_check,
            no_owner=args.no_owner, pg_bin_dir=args.pg_bin_dir, checks=checks, strategy=args.strategy,
            on_conflict=args.on_conflict,
        ))
        completed = datetime.datetime.now(datetime.UTC)
        manifest = outcome.manifest
        dump = manifest.objects[0]
        fields: dict[str, Any] = {
            "restoredFrom": {"uri": store.location.uri(dump.name) if len(manifest.objects) == 1
                             else store.location.uri("dump/"), "sha256": dump.sha256 if len(manifest.objects) == 1
                             else "", "manifestUri": store.location.uri("manifest.json")},
            "mode": args.mode,
            "target": settings.describe(),
            "tablesRestored": len(outcome.tables_restored),
            **({"tables": outcome.tables_restored, "strategy": args.strategy,
                "changes": {name: change.as_result() for name, change in outcome.changes.items()}}
               if args.mode == "tables" else {}),
            "recreated": outcome.recreated,
            "startedAt": started.isoformat(),
            "completedAt": completed.isoformat(),
            "durationSeconds": round((completed - started).total_seconds(), 3),
        }
        verification: dict[str, Any] = {}
        if outcome.row_counts is not None:
            verification["rowCounts"] = outcome.row_counts.as_result()
        if outcome.checks:
            verification["checks"] = [check.as_result() for check in outcome.checks]
        if verification:
            fields["verification"] = verification
        if not outcome.passed:
            problems = [*(outcome.row_counts.mismatches if outcome.row_counts else []),
                        *(f"check {c.name} failed: {c.detail}" for c in outcome.checks if not c.passed)]
            failed = [c.name for c in outcome.checks if not c.passed]
            what = " and ".join([*(["row counts differ"] if outcome.row_counts and not outcome.row_counts.passed
                                   else []), *([f"checks failed ({', '.join(failed)})"] if failed else [])])
            message = (f"restored {manifest.name} into {settings.describe()} but {what}: "
                       f"{'; '.join(problems)[:1000]}")
            return result.failure("restore", errors.VerificationError(message), **fields), message
        summary = (f"restored {manifest.name} ({args.mode}, {len(outcome.tables_restored)} tables) into "
                   f"{'the re-created ' if outcome.recreated else ''}{settings.describe()} in "
                   f"{fields['durationSeconds']:.1f}s")
        if outcome.changes:
            summary += "; " + _describe_changes(outcome.changes, args.on_conflict)
        if outcome.row_counts is not None:
            summary += f"; row counts match for {outcome.row_counts.tables_compared} tables"
        if outcome.checks:
            summary += f"; {len(outcome.checks)} checks passed"
        return result.success("restore", summary, **fields), summary

    return command.execute("restore", work, args.result_path)


def _describe_changes(changes: dict[str, restore_tables.TableChange], on_conflict: str) -> str:
    parts = []
    for name, change in changes.items():
        part = f"{name}: {change.inserted} inserted, {change.updated} updated, {change.deleted} deleted"
        if change.differing and change.updated < change.differing:
            part += (f"; {name}: {change.differing} rows differ from the backup and were kept "
                     f"(keys {'; '.join(change.differing_keys)}{' …' if change.differing > len(change.differing_keys) else ''}"
                     f"; --on-conflict overwrite replaces them)")
        parts.append(part)
    return "; ".join(parts)
