"""The ``dbops backup`` and ``dbops delete-backup`` commands."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from dbops import errors
from dbops.api.backup import Artifact, BackupJobResult, BackupSource
from dbops.runner import backup, command, compression, connection, lease, progress, result, stale, storage
from dbops.runner.manifest import MANIFEST_KEY, BackupScope

DEFAULT_STORAGE = "./dbops-backups"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``backup`` and ``delete-backup`` subcommands."""
    parser = subparsers.add_parser(
        "backup", help="dump a database into storage (manifest written last)",
        description="pg_dump streamed through compression and sha256 into S3 or a directory; "
        "the manifest.json written last marks the backup complete.",
    )
    connection.add_arguments(parser)
    parser.add_argument("--storage", default=DEFAULT_STORAGE, metavar="LOCATION",
                        help=f"s3://bucket/prefix, file:///path or a directory (default {DEFAULT_STORAGE})")
    storage.add_arguments(parser)
    stale.add_argument(parser)
    lease.add_arguments(parser)
    parser.add_argument("--name", help="backup name (default: UTC timestamp)")
    parser.add_argument("--namespace", default="local", help="first path element under the storage (default local)")
    parser.add_argument("--format", choices=backup.FORMATS, default="custom")
    parser.add_argument("--compression", choices=compression.CODECS, default="zstd")
    parser.add_argument("--compression-level", type=int, metavar="N")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel dump jobs (directory format)")
    scope = parser.add_argument_group("scope")
    scope.add_argument("--schema-only", action="store_true")
    scope.add_argument("--data-only", action="store_true")
    for flag in ("--schema", "--exclude-schema", "--table", "--exclude-table", "--exclude-table-data"):
        scope.add_argument(flag, action="append", default=[], metavar="PATTERN", help="repeatable")
    parser.add_argument("--pg-bin-dir", metavar="DIR", help="directory of pg_dump/pg_restore/psql")
    parser.add_argument("--run-id", default="", metavar="ID",
                        help="who the backup is for (recorded in the manifest); a run with the same id that finds "
                             "the backup committed reports it instead of failing AlreadyExists")
    parser.add_argument("--result-path", metavar="PATH", help="where to write the JSON result")
    parser.set_defaults(run=_run_backup)

    delete = subparsers.add_parser("delete-backup", help="delete a stored backup (manifest first)")
    delete.add_argument("--from", dest="source", required=True, metavar="LOCATION",
                        help="the backup folder or its manifest.json")
    storage.add_arguments(delete)
    stale.add_argument(delete)
    delete.add_argument("--result-path", metavar="PATH")
    delete.set_defaults(run=_run_delete)


def default_name(now: datetime.datetime | None = None) -> str:
    """A backup name from the UTC time, e.g. ``20261125-164500``."""
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d-%H%M%S")


def _run_backup(args: argparse.Namespace) -> int:
    def work() -> tuple[dict[str, Any], str]:
        settings = connection.from_args(args)
        target = storage.open_storage(storage.parse_location(args.storage), storage.options_from_args(args))
        lease_ttl, lease_wait = lease.settings_from_args(args)
        options = backup.BackupOptions(
            lease_ttl=lease_ttl, lease_wait=lease_wait,
            name=args.name or default_name(), namespace=args.namespace, format=args.format,
            codec=args.compression, level=args.compression_level, jobs=args.jobs, pg_bin_dir=args.pg_bin_dir,
            abort_incomplete_after=stale.max_age_from_args(args), run_id=args.run_id,
            scope=BackupScope(
                schema_only=args.schema_only, data_only=args.data_only, schemas=args.schema,
                exclude_schemas=args.exclude_schema, tables=args.table, exclude_tables=args.exclude_table,
                exclude_table_data=args.exclude_table_data,
            ),
        )
        outcome = backup.run_backup(settings, target, options)
        manifest = outcome.manifest
        duration = (manifest.completed_at - manifest.started_at).total_seconds()
        summary = (
            f"backup of {manifest.database} {'committed earlier by this run id' if outcome.adopted else 'committed'}"
            f" at {outcome.manifest_uri}: "
            f"{progress.format_bytes(outcome.size_bytes)} {manifest.format}/{manifest.codec}, "
            f"{len(manifest.tables)} tables, sha256 {outcome.sha256[:12]}…, {duration:.1f}s"
        )
        if outcome.took_over is not None:
            summary += f"; took over the stale commit lease of {outcome.took_over.describe()}"
        document = result.success(
            "backup", summary,
            **BackupJobResult(
                artifact=Artifact(uri=outcome.artifact_uri, manifest_uri=outcome.manifest_uri,
                                  size_bytes=outcome.size_bytes, sha256=outcome.sha256, format=manifest.format,
                                  codec=manifest.codec),
                source=BackupSource(database=manifest.database, server_version=manifest.server_version,
                                    database_size_bytes=manifest.database_size_bytes, table_count=len(manifest.tables),
                                    dump_tool_version=manifest.dump_tool_version),
            ).to_wire(),
            startedAt=manifest.started_at.isoformat(), completedAt=manifest.completed_at.isoformat(),
            durationSeconds=round(duration, 3), abortedIncompleteUploads=len(outcome.aborted_uploads),
            **({"tookOverStaleLease": outcome.took_over.to_wire()} if outcome.took_over else {}),
            **({"adopted": True} if outcome.adopted else {}),
        )
        return document, summary

    return command.execute("backup", work, args.result_path)


def _run_delete(args: argparse.Namespace) -> int:
    def work() -> tuple[dict[str, Any], str]:
        folder = storage.backup_location(args.source)
        store = storage.open_storage(folder, storage.options_from_args(args))
        aborted = backup.abort_stale_uploads(store, stale.max_age_from_args(args))
        keys = [key for key in store.list_keys() if key == MANIFEST_KEY or key.startswith(("dump", ".dump"))]
        if not keys:
            summary = f"nothing to delete at {folder.uri()}"
            return result.success("delete-backup", summary, deletedObjects=0, uri=folder.uri(),
                                  abortedIncompleteUploads=len(aborted)), summary
        # The manifest goes first: a half-deleted backup must not look complete.
        if MANIFEST_KEY in keys:
            store.delete([MANIFEST_KEY])
        rest = [key for key in keys if key != MANIFEST_KEY]
        store.delete(rest)
        if store.exists(MANIFEST_KEY):
            raise errors.TransientError(f"{folder.uri(MANIFEST_KEY)} still exists after deletion")
        summary = f"deleted backup {folder.uri()} ({len(keys)} objects)"
        return result.success("delete-backup", summary, deletedObjects=len(keys), uri=folder.uri(),
                              abortedIncompleteUploads=len(aborted)), summary

    return command.execute("delete-backup", work, args.result_path)
