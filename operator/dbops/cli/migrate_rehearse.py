"""``dbops migrate rehearse``: apply the plan to a scratch copy restored from a backup and report what it did."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dbops import errors
from dbops.api.durations import parse_duration
from dbops.cli import migrate_output
from dbops.runner import connection, result, storage
from dbops.runner.migrations import connect, session, source

if TYPE_CHECKING:  # imported when the command runs: it pulls in restore and the manifest models (P6 start-up)
    from dbops.runner.migrations import rehearsal

SCRATCH_PREFIX = "dbops_rehearsal_"  # rehearsal.SCRATCH_PREFIX (a unit test keeps them equal)

SERVER_ENV_PREFIX = "DBOPS_REHEARSAL_"

HELP = ("restore a backup into a scratch database, apply the plan there and report locks, rows, sizes and durations "
        "(the scratch database is always dropped)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The backup to restore, the scratch database and the gates."""
    parser.add_argument("--from", dest="backup_from", required=True, metavar="LOCATION",
                        help="the backup folder or its manifest.json (s3://… or a directory) to restore the copy from")
    storage.add_arguments(parser)
    parser.add_argument("--scratch-database", default="",
                        help=f"the scratch database on the target's server ({SCRATCH_PREFIX}…; dropped "
                             "afterwards, also on failure; default derived from the target and the sources)")
    parser.add_argument("--max-duration", default="",
                        help="fail (RehearsalExceededWindow) when the migrations take longer, e.g. 2h")
    parser.add_argument("--max-exclusive-lock-table-bytes", type=int, default=None, metavar="BYTES",
                        help="fail (RehearsalLockedLargeTable) when a migration holds an ACCESS EXCLUSIVE lock on a "
                             "larger table")
    parser.add_argument("--available-space-bytes", type=int, default=None, metavar="BYTES",
                        help="the disk the server has free for the copy (PostgreSQL does not tell a client): refuse "
                             "(RehearsalInsufficientSpace) when twice the backup's database size is larger")
    parser.add_argument("--server-from-env", action="store_true",
                        help=f"restore and rehearse on a staging server given by {SERVER_ENV_PREFIX}DATABASE_URI and/or "
                             f"{SERVER_ENV_PREFIX}PGHOST, …PGPORT, …PGUSER, …PGPASSWORD, …PGSSLMODE (credentials "
                             "only from the environment; default: the target's server)")
    parser.add_argument("--restore-jobs", type=int, default=1, metavar="N", help="parallel pg_restore jobs")


def options_from_args(args: argparse.Namespace, target: connection.ConnectionSettings) -> rehearsal.RehearsalOptions:
    """The rehearsal options from the flags (InvalidSpecError naming the flag when one is wrong)."""
    from dbops.runner.migrations import rehearsal

    max_duration = None
    if args.max_duration:
        try:
            max_duration = parse_duration(args.max_duration)
        except ValueError as error:
            raise errors.InvalidSpecError(f"--max-duration: {error}") from None
    if args.max_exclusive_lock_table_bytes is not None and args.max_exclusive_lock_table_bytes < 0:
        raise errors.InvalidSpecError("--max-exclusive-lock-table-bytes must not be negative")
    if args.available_space_bytes is not None and args.available_space_bytes < 0:
        raise errors.InvalidSpecError("--available-space-bytes must not be negative")
    name = args.scratch_database or rehearsal.scratch_name(target.dbname, str(args.source or args.inline_file),
                                                            args.backup_from)
    return rehearsal.RehearsalOptions(scratch_database=name, max_duration_seconds=max_duration,
                                      max_exclusive_lock_bytes=args.max_exclusive_lock_table_bytes,
                                      restore_jobs=max(1, args.restore_jobs),
                                      available_space_bytes=args.available_space_bytes,
                                      server=staging_server() if args.server_from_env else None)


def staging_server(environ: Mapping[str, str] | None = None) -> connection.ConnectionSettings:
    """The staging server from the ``DBOPS_REHEARSAL_`` variables alone (never the target's)."""
    env = os.environ if environ is None else environ
    own = {("DBOPS_" + key[len(SERVER_ENV_PREFIX):] if key == SERVER_ENV_PREFIX + "DATABASE_URI"
            else key[len(SERVER_ENV_PREFIX):]): value
           for key, value in env.items() if key.startswith(SERVER_ENV_PREFIX) and value}
    if not own:
        raise errors.InvalidSpecError(f"--server-from-env: no {SERVER_ENV_PREFIX}DATABASE_URI or "
                                      f"{SERVER_ENV_PREFIX}PGHOST in the environment")
    return connection.from_environment(environ=own)


def run(args: argparse.Namespace, config: session.RunConfig, migrations: list[source.Migration]) -> int:
    """Rehearse and publish the result (the ``rehearsal`` object, also when it failed)."""
    from dbops.runner.migrations import rehearsal

    name = "migrate rehearse"
    target = connection.from_args(args)
    report = rehearsal.RehearsalReport(scratch_database="")
    try:
        options = options_from_args(args, target)
        report.scratch_database = options.scratch_database
        store = storage.open_storage(storage.backup_location(args.backup_from), storage.options_from_args(args))
        with connect.translated_errors("rehearsing"):
            rehearsal.rehearse(store, target, migrations, config, options, report)
    except Exception as error:
        if isinstance(error, errors.DbopsError):
            report.reason = report.reason or error.reason
        return _publish(args, result.failure(name, error, rehearsal=report.as_result()),
                        f"dbops {name} failed")
    document = result.success(name, report.message, rehearsal=report.as_result())
    return _publish(args, document, f"dbops {name}: {report.message}")


def _publish(args: argparse.Namespace, document: dict[str, Any], head: str) -> int:
    summary = head if document["ok"] else f"{head}: {document['message']}"
    return migrate_output.publish(document, args, summary)
