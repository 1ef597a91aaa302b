"""The ``dbops check`` command: pre-migration checks of a live database (pass / warn / fail each)."""

from __future__ import annotations

import argparse
from typing import Any

from dbops import errors
from dbops.cli import migrate_output
from dbops.runner import prechecks, result
from dbops.runner.migrations import connect


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser("check", help="pre-migration checks of a live database")
    connect.add_connection_arguments(parser)
    parser.add_argument("--schema", default="public", help="schema the migration creates in (default public)")
    parser.add_argument("--max-active-connections", type=int, default=100,
                        help="fail above this many other connections (default 100)")
    parser.add_argument("--max-blocking-transaction-seconds", type=float, default=60.0,
                        help="transactions older than this would block DDL (default 60)")
    parser.add_argument("--fail-on", choices=("fail", "warn"), default="fail",
                        help="the level that fails the run (default fail)")
    migrate_output.add_result_path(parser)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    name = "check"
    results: list[prechecks.PreCheck] = []
    try:
        config = prechecks.PreCheckConfig(
            schema=args.schema,
            max_active_connections=args.max_active_connections,
            max_blocking_transaction_seconds=args.max_blocking_transaction_seconds,
            fail_on=args.fail_on,
        )
        with connect.session(args, application_name="dbops-check") as connection, \
                connect.translated_errors("the pre-checks"):
            results = prechecks.run_prechecks(connection, config)
        prechecks.raise_on_failures(results, config.fail_on)
    except Exception as error:
        if not results and isinstance(error, errors.DbopsError):  # could not connect: connectivity failed
            results = [prechecks.PreCheck("connectivity", "fail", error.message)]
        document = result.failure(name, error, preChecks=[r.as_result() for r in results])
        print(result.encode_result(document).decode())
        return result.emit(document, f"dbops {name} failed: {document['message']}", args.result_path)
    summary = ", ".join(f"{r.name} {r.result}" for r in results)
    document = result.success(name, summary, preChecks=[r.as_result() for r in results])
    print(result.encode_result(document).decode())
    return result.emit(document, f"dbops {name}: {summary}", args.result_path)
