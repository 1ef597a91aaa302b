"""The verification flags of ``dbops migrate apply`` and ``dbops verify-db``, and the config they make."""

from __future__ import annotations

import argparse
from pathlib import Path

from dbops.runner import dbverify
from dbops.runner.migrations import frameworks

# Cheap, catalog-driven checks that catch what a migration can break (orphan counts stay under a size guard);
# row counts are off for SQL files, whose data migrations change them on purpose.
SQL_MODE_BUILTINS = ("foreignKeys", "invalidIndexes")
DEFAULT_ORPHAN_SCAN_MAX_MB = 256.0


def add_arguments(parser: argparse.ArgumentParser, *, standalone: bool = False) -> None:
    """The flags of ``migrate apply`` (``standalone``: of ``verify-db``)."""
    if not standalone:
        parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                            help="verify the database afterwards (default: on; the cheap builtins "
                                 "for SQL files unless --verify or --verify-builtin asks for more)")
        parser.add_argument("--verify-builtin", dest="verify_builtin", default=None,
                            help="comma-separated builtins (default: " + ",".join(SQL_MODE_BUILTINS)
                            + " for SQL files, all of " + ",".join(dbverify.BUILTINS)
                            + " in command mode; 'none' for none)")
        parser.add_argument("--orphan-scan-max-mb", type=float, default=DEFAULT_ORPHAN_SCAN_MAX_MB,
                            help="count orphan rows only on referencing tables up to this size in MiB "
                                 "(default %(default)g; 0 = every table, which can be slow)")
    else:
        parser.add_argument("--builtin", dest="verify_builtin", default=",".join(dbverify.BUILTINS),
                            help="comma-separated builtins (default %(default)s; 'none' for none)")
    parser.add_argument("--checks-file", type=Path, help="JSON/YAML list of {name, sql, expect}")
    parser.add_argument("--row-count-tolerance", type=float, default=0.0,
                        help="allowed row-count change in percent (default 0)")
    parser.add_argument("--row-count-tables", default="",
                        help="compare row counts of only these comma-separated [schema.]table")
    parser.add_argument("--framework", choices=frameworks.FRAMEWORKS, default="auto",
                        help="whose bookkeeping tables to leave out of row counts (and, in command mode, whose "
                             "history to report); default: detected from the command, else every known set")
    if standalone:
        parser.add_argument("--row-counts-before", type=Path, help="row counts from --row-counts-out")
        parser.add_argument("--row-counts-out", type=Path, help="write the current row counts here")


def table_names(text: str) -> frozenset[str]:
    """``a, app.b`` → {public.a, app.b}."""
    names = (name.strip() for name in text.split(",") if name.strip())
    return frozenset(name if "." in name else f"public.{name}" for name in names)


def config(args: argparse.Namespace) -> dbverify.VerifyConfig:
    """The verification the flags ask for (command mode adds the detected framework's tables itself)."""
    checks = dbverify.load_checks_file(args.checks_file) if args.checks_file else ()
    builtins = args.verify_builtin
    command_mode = getattr(args, "command_mode", False)
    if builtins is None:
        explicit = getattr(args, "verify", None) is True or command_mode
        builtins = ",".join(dbverify.BUILTINS if explicit else SQL_MODE_BUILTINS)
    max_mb = getattr(args, "orphan_scan_max_mb", 0.0)
    framework = getattr(args, "framework", "auto")
    return dbverify.VerifyConfig(
        builtins=dbverify.parse_builtins(builtins), checks=checks,
        row_count_tolerance_percent=args.row_count_tolerance,
        exclude_tables=frozenset() if command_mode else frameworks.bookkeeping_tables(framework),
        row_count_tables=table_names(getattr(args, "row_count_tables", "")),
        orphan_scan_max_bytes=int(max_mb * 1024 * 1024) if max_mb > 0 else None)
