"""The verification flags of ``dbops migrate apply`` and ``dbops verify-db``, and the config they make."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbops import errors
from dbops.api.builtin_checks import DEFAULT_BUILTIN_CHECKS
from dbops.cli import migrate_output, migrate_snapshot
from dbops.runner import dbverify, relation_sizes, result, row_counts
from dbops.runner.migrations import connect, frameworks

if TYPE_CHECKING:  # imported when queries are given (P6 start-up)
    from dbops.runner import query_plans

# Cheap, catalog-driven checks that catch what a migration can break (orphan counts stay under a size guard);
# row counts are off for SQL files, whose data migrations change them on purpose.
SQL_MODE_BUILTINS = ("foreignKeys", "invalidIndexes")
DEFAULT_ORPHAN_SCAN_MAX_MB = 256.0
NO_COUNTS_BEFORE = ("skipped: no row counts were recorded before the command (the command Job's framework-snapshot "
                    "container did not record them; see its log)")


def add_arguments(parser: argparse.ArgumentParser, *, standalone: bool = False) -> None:
    """The flags of ``migrate apply`` (``standalone``: of ``verify-db``)."""
    if not standalone:
        parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                            help="verify the database afterwards (default: on; the cheap builtins "
                                 "for SQL files unless --verify or --verify-builtin asks for more)")
        parser.add_argument("--verify-builtin", dest="verify_builtin", default=None,
                            help="comma-separated builtins (default: " + ",".join(SQL_MODE_BUILTINS)
                            + " for SQL files, " + ",".join(DEFAULT_BUILTIN_CHECKS)
                            + " in command mode (as a DatabaseMigration); --verify: all of "
                            + ",".join(dbverify.BUILTINS) + "; 'none' for none)")
    else:
        parser.add_argument("--builtin", dest="verify_builtin", default=",".join(dbverify.BUILTINS),
                            help="comma-separated builtins (default %(default)s; 'none' for none)")
    parser.add_argument("--orphan-scan-max-mb", type=float, default=DEFAULT_ORPHAN_SCAN_MAX_MB,
                        help="count orphan rows only on referencing tables up to this size in MiB "
                             "(default %(default)g; 0 = every table, which can be slow)")
    parser.add_argument("--checks-file", type=Path, help="JSON/YAML list of {name, sql, expect}")
    parser.add_argument("--row-count-tolerance", type=float, default=0.0,
                        help="allowed row-count change in percent (default 0)")
    parser.add_argument("--row-count-tables", default="",
                        help="compare row counts of only these comma-separated [schema.]table")
    parser.add_argument("--framework", choices=frameworks.FRAMEWORKS, default="auto",
                        help="whose bookkeeping tables to leave out of row counts (and, in command mode, whose "
                             "history to report); default: detected from the command, else every known set")
    parser.add_argument("--queries-file", type=Path,
                        help="JSON/YAML list of {name, sql, analyze, usesIndex, noSeqScanOn, maxCost}: EXPLAIN "
                             "(ANALYZE only with analyze: true, rolled back) after migrating, assertions verified")
    parser.add_argument("--queries-json", help="the same list as JSON text (what the operator passes)")
    parser.add_argument("--sizes-top", type=int, default=relation_sizes.DEFAULT_TOP,
                        help="report this many table and this many index size changes (default %(default)s; 0: none)")
    if standalone:
        parser.add_argument("--row-counts-before", type=Path, help="row counts from --row-counts-out")
        parser.add_argument("--row-counts-out", type=Path, help="write the current row counts here")
        migrate_snapshot.add_arguments(parser)


def table_names(text: str) -> frozenset[str]:
    """``a, app.b`` → {public.a, app.b}."""
    return row_counts.parse_tables(text)


def queries(args: argparse.Namespace) -> tuple[query_plans.QuerySpec, ...]:
    """The queries of ``--queries-file`` and ``--queries-json``."""
    if not (getattr(args, "queries_file", None) or getattr(args, "queries_json", None)):
        return ()
    from dbops.runner import query_plans  # only with queries (P6 start-up)

    found: list[query_plans.QuerySpec] = []
    if getattr(args, "queries_file", None):
        path: Path = args.queries_file
        found += query_plans.load_queries(dbverify.load_document(path, "queries file"), str(path))
    if getattr(args, "queries_json", None):
        try:
            document = json.loads(args.queries_json)
        except json.JSONDecodeError as error:
            raise errors.InvalidSpecError(f"--queries-json: not valid JSON: {error}") from error
        found += query_plans.load_queries(document, "--queries-json")
    names = [query.name for query in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise errors.InvalidSpecError(f"duplicate query names: {', '.join(duplicates)}")
    return tuple(found)


def config(args: argparse.Namespace) -> dbverify.VerifyConfig:
    """The verification the flags ask for (command mode adds the detected framework's tables itself)."""
    checks = dbverify.load_checks_file(args.checks_file) if args.checks_file else ()
    builtins = args.verify_builtin
    command_mode = getattr(args, "command_mode", False)
    if builtins is None:
        # command mode verifies what a DatabaseMigration does by default: rowCounts is opt-in there too, as a
        # framework release's data migration changes counts on purpose (and is committed before verifying)
        default = DEFAULT_BUILTIN_CHECKS if command_mode else SQL_MODE_BUILTINS
        builtins = ",".join(dbverify.BUILTINS if getattr(args, "verify", None) is True else default)
        if getattr(args, "row_count_tables", "") and "rowCounts" not in builtins:
            builtins += ",rowCounts"  # naming the tables to compare asks for the comparison
    max_mb = getattr(args, "orphan_scan_max_mb", DEFAULT_ORPHAN_SCAN_MAX_MB)
    framework = getattr(args, "framework", "auto")
    return dbverify.VerifyConfig(
        builtins=dbverify.parse_builtins(builtins), checks=checks,
        row_count_tolerance_percent=args.row_count_tolerance,
        exclude_tables=frozenset() if command_mode else frameworks.bookkeeping_tables(framework),
        row_count_tables=table_names(getattr(args, "row_count_tables", "")),
        queries=queries(args),
        orphan_scan_max_bytes=int(max_mb * 1024 * 1024) if max_mb > 0 else None)


def run_verify_db(args: argparse.Namespace) -> int:
    """``dbops verify-db``: verify a live database (after a framework command), with the result JSON."""
    name = "verify-db"
    verification: list[dbverify.CheckResult] = []
    sizes: dict[str, Any] | None = None
    framework: dict[str, Any] = {}
    try:
        verify_config = config(args)
        exclude = verify_config.exclude_tables | migrate_snapshot.excluded_tables(args)
        verify_config = dataclasses.replace(
            verify_config, exclude_tables=exclude,
            row_count_exact_max_bytes=row_counts.exact_max_bytes(args.row_count_exact_max_mb))
        before = dbverify.load_row_counts(args.row_counts_before) if args.row_counts_before else None
        with connect.session(args) as connection, \
                connect.translated_errors("verifying"):
            snapshot = migrate_snapshot.load(connection, args)
            framework = migrate_snapshot.report(connection, args, snapshot)
            counted = before if before is not None else migrate_snapshot.counts_before(snapshot)
            verification = dbverify.verify(connection, verify_config, counted)
            if counted is None and args.snapshot_run:
                verification = [dataclasses.replace(v, detail=NO_COUNTS_BEFORE) if v.name == "rowCounts" else v
                                for v in verification]
            if args.sizes_top > 0:
                relations, left_out = migrate_snapshot.sizes_before(snapshot)
                sizes = relation_sizes.changes(relations, relation_sizes.snapshot(connection), args.sizes_top,
                                               before_omitted=left_out)
            if args.row_counts_out:
                counts = dbverify.row_counts(connection, exclude)
                args.row_counts_out.write_text(json.dumps(counts, indent=1, sort_keys=True))
            if snapshot is not None:
                migrate_snapshot.drop(connection, args)
        failed = [v for v in verification if not v.passed]
        if failed:
            raise errors.VerificationError(
                "verification failed: " + "; ".join(f"{v.name}: {v.detail}" for v in failed[:5])
            )
    except Exception as error:
        document = result.failure(name, error, verification=[v.as_result() for v in verification], **framework)
        return publish_with_sizes(document, sizes, args, f"dbops {name} failed: {document['message']}")
    ran = migrate_snapshot.summary(framework.get("frameworkHistory", []))
    document = result.success(name, f"{len(verification)} verifications passed" + (f" ({ran})" if ran else ""),
                              verification=[v.as_result() for v in verification], **framework)
    return publish_with_sizes(document, sizes, args, f"dbops {name}: {document['message']}")


def publish_with_sizes(document: dict[str, Any], sizes: dict[str, Any] | None, args: argparse.Namespace,
                       summary: str) -> int:
    """Publish with ``sizes`` cut to the room the rest of the result leaves (said in sizes.note), so the 4 KiB
    cap never halves the verification list or drops sizes unannounced; the complete sizes go to the log."""
    if sizes is not None:
        rest = len(result.encode_result(document))
        fitted = relation_sizes.fit(sizes, result.MAX_RESULT_BYTES - rest - len(',"sizes":') - 8)
        if fitted != sizes:
            print(f"dbops: sizes {json.dumps(sizes, sort_keys=True)}", file=sys.stderr, flush=True)
        document = {**document, "sizes": fitted}
    return migrate_output.publish(document, args, summary)

