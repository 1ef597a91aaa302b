"""The ``dbops verify`` command: checksums, full decode and an optional restore test of a stored backup."""

from __future__ import annotations

import argparse
from typing import Any

from dbops import errors
from dbops.runner import command, connection, restore_checks, result, storage, verify


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify", help="verify a stored backup",
        description="Re-check every object's size and sha256 against the manifest and decode the whole "
        "archive with pg_restore; --restore-test also restores it into a scratch database on the "
        "connection's server, compares row counts with the manifest and runs --check-sql queries "
        "(a check passes when it returns no rows or every row's first column is true).",
    )
    parser.add_argument("--from", dest="source", required=True, metavar="LOCATION",
                        help="the backup folder or its manifest.json (s3://… or a directory)")
    parser.add_argument("--restore-test", action="store_true", help="restore into a scratch database")
    parser.add_argument("--check-sql", action="append", default=[], metavar="SQL", help="repeatable")
    parser.add_argument("--checks-json", metavar="JSON",
                        help='SQL checks with expectations run in the scratch database: [{"name", "sql", "expect": '
                        '{rows|min|max|equals}}]')
    parser.add_argument("--checks-file", metavar="FILE", help="the same checks as a JSON or YAML file")
    connection.add_arguments(parser)
    storage.add_arguments(parser)
    parser.add_argument("--pg-bin-dir", metavar="DIR")
    parser.add_argument("--result-path", metavar="PATH")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    def work() -> tuple[dict[str, Any], str]:
        user_checks = restore_checks.load_checks(args.checks_json, args.checks_file)
        store = storage.open_storage(storage.backup_location(args.source), storage.options_from_args(args))
        scratch = connection.from_args(args) if args.restore_test else None
        outcome = verify.run_verify(store, scratch_server=scratch, checks=tuple(args.check_sql),
                                    user_checks=user_checks, pg_bin_dir=args.pg_bin_dir)
        verification: dict[str, Any] = {"decoded": outcome.decoded, "verifiedAt": outcome.verified_at.isoformat()}
        if outcome.restore_test is not None:
            verification["restoreTest"] = outcome.restore_test.as_result()
        if outcome.checks or outcome.user_checks:
            verification["checks"] = [*(check.as_result() for check in outcome.user_checks),
                                       *({"sql": c.sql[:200], "passed": c.passed, "detail": c.detail}
                                         for c in outcome.checks)]
        where = store.location.uri()
        if outcome.passed:
            summary = f"backup {where} verified: checksums match, archive decodes"
            if outcome.restore_test is not None:
                summary += f", restore test compared {outcome.restore_test.tables_compared} tables"
            if outcome.checks or outcome.user_checks:
                summary += f", {len(outcome.checks) + len(outcome.user_checks)} checks passed"
            return result.success("verify", summary, verification=verification), summary
        problems = [*(outcome.restore_test.mismatches if outcome.restore_test else []),
                    *(f"check {c.name} failed: {c.detail}" for c in outcome.user_checks if not c.passed),
                    *(f"check failed: {c.sql[:80]}: {c.detail}" for c in outcome.checks if not c.passed)]
        message = f"backup {where} failed verification: {'; '.join(problems)[:1000]}"
        document = result.failure("verify", errors.VerificationError(message), verification=verification)
        return document, message

    return command.execute("verify", work, args.result_path)
