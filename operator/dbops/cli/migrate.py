"""The ``dbops migrate plan|apply|down|status`` and ``dbops verify-db`` commands.

Sources: ``--source DIR`` (``NNNN_name.up.sql`` / ``NNNN_name.down.sql``; a mounted ConfigMap) or
``--inline-file FILE`` (JSON/YAML list of ``{version, name, up, down}``); or, for ``apply``,
``--command -- ARGV…`` (a framework's own migration command). Credentials come only from
``DBOPS_DATABASE_URI`` / ``PG*`` environment variables. Results follow ``dbops.runner.result``:

    0  done (and verified, where asked); also a dry run that would succeed
    1  pre-checks or post-migration verification failed (reason PreChecksFailed / VerificationFailed)
    2  a migration failed, drifted (MigrationDrift), needs a baseline (BaselineRequired), lint failed
       (LintFailed), the plan changed (PlanChanged), down not allowed, or bad input / credentials
    3  retry later: another runner holds the advisory lock, lock_timeout retries exhausted (LockHeld),
       or PostgreSQL unreachable
    4  a bug in dbops
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dbops import errors
from dbops.api.durations import parse_duration, postgres_duration
from dbops.cli import migrate_messages, migrate_output, migrate_rehearse, migrate_snapshot, migrate_verify
from dbops.runner import result
from dbops.runner.migrations import adopt, connect, history, lint, plan, session, source
from dbops.runner.migrations.report import ApplyOptions

# Imported where used, as a plain `migrate apply` needs neither (P6 start-up): prechecks and the command mode
# (`migrations.command`).


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``migrate`` subcommand (with plan/apply/down/status) and ``verify-db``."""
    parser = subparsers.add_parser("migrate", help="plan, apply, roll back and inspect schema migrations")
    actions = parser.add_subparsers(dest="migrate_action", required=True, metavar="ACTION")

    plan_parser = actions.add_parser("plan", help="pending versions, plan hash, lint findings (read-only)")
    _add_common(plan_parser)
    _add_planning(plan_parser)
    _add_lint(plan_parser)
    plan_parser.set_defaults(run=_run_plan, check=_check_flags)

    apply_parser = actions.add_parser("apply", help="apply pending migrations (or a framework command)")
    _add_common(apply_parser)
    _add_planning(apply_parser)
    _add_lint(apply_parser)
    _add_execution(apply_parser)
    _add_prechecks(apply_parser, prefix="pre-check-")
    migrate_verify.add_arguments(apply_parser)
    apply_parser.add_argument("--command", dest="command_mode", action="store_true",
                              help="command mode: run the command given after '--' instead of SQL files")
    apply_parser.add_argument("--command-timeout", type=float, help="seconds before the command is killed")
    apply_parser.add_argument("framework_command", nargs="*", help=argparse.SUPPRESS)
    apply_parser.set_defaults(run=_run_apply, check=_check_flags)

    down_parser = actions.add_parser("down", help="run down migrations to an earlier version")
    _add_common(down_parser)
    down_parser.add_argument("--to", dest="to_version", required=True,
                             help="the version to end at (0 = before the first migration)")
    down_parser.add_argument("--baseline-version", help=argparse.SUPPRESS)
    _add_lint(down_parser, default=False)
    _add_execution(down_parser)
    down_parser.set_defaults(run=_run_down, check=_check_flags)

    rehearse_parser = actions.add_parser("rehearse", help=migrate_rehearse.HELP)
    for add in (_add_common, _add_planning, _add_lint, _add_execution, migrate_verify.add_arguments,
                migrate_rehearse.add_arguments):
        add(rehearse_parser)
    rehearse_parser.set_defaults(run=_run_rehearse, check=_check_flags)

    status_parser = actions.add_parser("status", help="current version, applied, pending and drift")
    _add_common(status_parser)
    status_parser.set_defaults(run=_run_status)

    import_parser = actions.add_parser("import", help="import golang-migrate's, Flyway's or goose's history into ours")
    _add_common(import_parser)
    import_parser.add_argument("--from", dest="tool", choices=sorted(adopt.TOOLS), required=True)
    import_parser.add_argument("--from-table", help="their history table (default: the tool's default)")
    import_parser.set_defaults(run=_run_import)

    repair_parser = actions.add_parser("repair", help="accept the changed text of an applied migration")
    _add_common(repair_parser)
    repair_parser.add_argument("--version", dest="repair_version", required=True)
    repair_parser.add_argument("--reason", required=True, help="why the applied file changed (recorded)")
    repair_parser.set_defaults(run=_run_repair)

    migrate_snapshot.register(actions)

    verify_parser = subparsers.add_parser("verify-db", help="verify a live database after a migration")
    connect.add_connection_arguments(verify_parser)
    migrate_verify.add_arguments(verify_parser, standalone=True)
    verify_parser.add_argument("--history-table", default=history.DEFAULT_TABLE,
                               help="excluded from row counts (default %(default)s)")
    migrate_output.add_arguments(verify_parser)
    verify_parser.set_defaults(run=migrate_verify.run_verify_db)


def _add_common(parser: argparse.ArgumentParser) -> None:
    connect.add_connection_arguments(parser)
    sources = parser.add_mutually_exclusive_group()
    sources.add_argument("--source", type=Path, help="directory of NNNN_name.up.sql / NNNN_name.down.sql files")
    sources.add_argument("--inline-file", type=Path, help="JSON/YAML list of {version, name, up, down}")
    parser.add_argument("--history-table", default=history.DEFAULT_TABLE, help="default %(default)s")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="accept gaps in the version numbers (golang-migrate, Flyway, timestamp versions)")
    migrate_output.add_arguments(parser)


def _add_planning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline-version", help="adopt a non-empty database without history at this version")
    parser.add_argument("--target-version", help="stop at this version (lower than current needs --allow-down)")
    parser.add_argument("--allow-down", action="store_true", help="allow a target below the current version")
    parser.add_argument("--import-history", choices=sorted(adopt.TOOLS),
                        help="first import this tool's history into ours when ours is empty and theirs exists "
                             "(as `migrate import`; a plan or dry run only reads it)")
    parser.add_argument("--import-history-table", help="their history table (default: the tool's default)")


def _add_lint(parser: argparse.ArgumentParser, *, default: bool = True) -> None:
    parser.add_argument("--lint", action=argparse.BooleanOptionalAction, default=default,
                        help="lint the SQL with squawk")
    parser.add_argument("--lint-fail-on", choices=lint.SEVERITIES, default="error",
                        help="fail at this lint severity (default %(default)s)")
    parser.add_argument("--lint-exclude", default=",".join(lint.DEFAULT_EXCLUDED_RULES),
                        help="comma-separated squawk rules to skip (default: %(default)s)")


def _add_execution(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="run inside a transaction that is rolled back")
    parser.add_argument("--lock-timeout", default="5s", help="lock_timeout per migration, e.g. 5s, 500ms, 1h30m (default %(default)s)")
    parser.add_argument("--statement-timeout", default="0", help="statement_timeout per migration, e.g. 30s, 2m (0 = none)")
    parser.add_argument("--lock-retries", type=int, default=3, help="retries after a lock timeout (default 3)")
    parser.add_argument("--lock-retry-backoff", type=float, default=1.0,
                        help="seconds before the first retry, doubling (default 1)")
    parser.add_argument("--lock-wait-timeout", default="60s",
                        help="how long to wait for another runner's advisory lock (default %(default)s)")
    parser.add_argument("--expect-plan-hash", help="refuse unless the plan hash equals this (manual approval)")


def _add_prechecks(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    if prefix:
        parser.add_argument("--pre-checks", action=argparse.BooleanOptionalAction, default=None,
                            help="run pre-checks first (default: on in command mode, off otherwise)")
    parser.add_argument(f"--{prefix}schema" if prefix else "--schema", dest="check_schema", default="public",
                        help="schema that must be writable (default public)")
    parser.add_argument("--max-active-connections", type=int, default=100)
    parser.add_argument("--max-blocking-transaction-seconds", type=float, default=60.0)
    parser.add_argument(f"--{prefix}fail-on" if prefix else "--fail-on", dest="check_fail_on",
                        choices=("fail", "warn"), default="fail")


def _check_flags(args: argparse.Namespace) -> None:
    """The configuration the flags make, without reading the files they name (mounted only in the Job)."""
    flags = argparse.Namespace(**{**vars(args), "checks_file": None})
    _run_config(flags, target=getattr(args, "to_version", None))


def _load_migrations(args: argparse.Namespace) -> list[source.Migration]:
    if args.source is not None:
        return source.load_directory(args.source, allow_gaps=getattr(args, "allow_gaps", False))
    if args.inline_file is not None:
        return source.load_inline_file(args.inline_file, allow_gaps=getattr(args, "allow_gaps", False))
    raise errors.InvalidSpecError("give --source DIR or --inline-file FILE (or --command -- ARGV for apply)")


def _duration(value: str, flag: str) -> str:
    """A timeout flag in the API's duration grammar, as the PostgreSQL value it sets."""
    try:
        return postgres_duration(value)
    except ValueError as error:
        raise errors.InvalidSpecError(f"{flag}: {error}") from None


def _seconds(value: str, flag: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise errors.InvalidSpecError(f"{flag}: {error}") from None


def _run_config(args: argparse.Namespace, *, target: str | None = None, allow_down: bool = False) -> session.RunConfig:
    has_execution = hasattr(args, "lock_timeout")
    options = ApplyOptions(
        lock_timeout=_duration(args.lock_timeout, "--lock-timeout"),
        statement_timeout=_duration(args.statement_timeout, "--statement-timeout"),
        lock_retries=args.lock_retries,
        retry_backoff_seconds=args.lock_retry_backoff,
        dry_run=args.dry_run,
    ) if has_execution else ApplyOptions()
    pre = None
    if _enabled(getattr(args, "pre_checks", False), args):
        from dbops.runner import prechecks

        pre = prechecks.PreCheckConfig(schema=args.check_schema, max_active_connections=args.max_active_connections,
                                       max_blocking_transaction_seconds=args.max_blocking_transaction_seconds,
                                       fail_on=args.check_fail_on)
    baseline_version = getattr(args, "baseline_version", None) or None
    target_version = target if target is not None else getattr(args, "target_version", None) or None
    for flag, value in (("--baseline-version", baseline_version), ("--target-version", target_version)):
        if value is not None:
            plan.parse_version(value, flag)
    return session.RunConfig(
        table=history.HistoryTable.parse(args.history_table),
        baseline_version=baseline_version,
        target_version=target_version,
        allow_down=allow_down or getattr(args, "allow_down", False),
        apply=options,
        lock_wait_seconds=_seconds(args.lock_wait_timeout, "--lock-wait-timeout") if has_execution else 60.0,
        lint_enabled=args.lint,
        lint_fail_on=args.lint_fail_on,
        lint_excluded_rules=tuple(rule.strip() for rule in args.lint_exclude.split(",") if rule.strip()),
        expect_plan_hash=getattr(args, "expect_plan_hash", None) or None,
        prechecks=pre,
        verify=migrate_verify.config(args) if getattr(args, "verify", False) is not False and hasattr(args, "verify")
        else None,
        sizes_top=max(0, getattr(args, "sizes_top", 0)),
        import_history=getattr(args, "import_history", None),
        import_history_table=getattr(args, "import_history_table", None) or None,
    )


def _enabled(flag: bool | None, args: argparse.Namespace) -> bool:
    """An on/off flag whose default (None) means on in command mode and off otherwise."""
    return bool(getattr(args, "command_mode", False)) if flag is None else flag


def _run_plan(args: argparse.Namespace) -> int:
    name = "migrate plan"
    current: dict[str, Any] = {}
    try:
        config = _run_config(args)
        migrations = _load_migrations(args)
        with connect.session(args) as connection, \
                connect.translated_errors("planning"), \
                session.imported_first(connection, migrations, config, commit=False) as imported:
            # Read first, so a refusal (drift, baseline required …) still says where the database is.
            current["currentVersion"] = session.current_version(connection, config)
            migration_plan = session.make_plan(connection, migrations, config)
    except Exception as error:
        return _fail(args, name, error, **current)
    if imported:
        current["importedHistory"] = imported
    failure = session.lint_failure(migration_plan, config)
    if failure is not None:
        return _fail(args, name, failure, plan=migration_plan.as_result(), **current)
    message = f"{len(migration_plan.pending)} pending ({migration_plan.direction})"
    if imported:
        message += f" after importing {len(imported)} versions from {config.import_history} (done by apply)"
    document = result.success(name, message, plan=migration_plan.as_result(), **current)
    return migrate_output.publish(document, args,
                                  f"dbops {name}: {document['message']}, plan hash {migration_plan.hash[:12]}")


def _run_apply(args: argparse.Namespace) -> int:
    name = "migrate apply"
    outcome = session.RunOutcome()
    try:
        config = _run_config(args)
        if args.command_mode:
            if args.dry_run or args.source or args.inline_file or args.target_version or args.baseline_version \
                    or args.import_history:
                raise errors.InvalidSpecError(
                    "command mode runs the framework's own command: --dry-run, --source, --inline-file, "
                    "--target-version, --baseline-version and --import-history do not apply (use the framework's "
                    "options)"
                )
            from dbops.runner.migrations import command

            with connect.session(args) as connection, connect.translated_errors("the command run"):
                command.run_command(connection, args.framework_command, config, outcome=outcome,
                                    timeout_seconds=args.command_timeout, framework=args.framework,
                                    row_count_tables=migrate_verify.table_names(args.row_count_tables))
            message = "migration command succeeded" + migrate_messages.history_note(outcome.framework_history)
        else:
            if args.framework_command:
                raise errors.InvalidSpecError(
                    f"unexpected arguments {args.framework_command}; use --command -- ARGV for command mode"
                )
            migrations = _load_migrations(args)
            with connect.session(args) as connection, connect.translated_errors("migrating"):
                session.run(connection, migrations, config, outcome)
            message = migrate_messages.apply_message(outcome)
            if outcome.imported and config.apply.dry_run:
                message += f"; {config.import_history}'s history read as if imported ({len(outcome.imported)} versions)"
            elif outcome.imported:
                message = f"imported {len(outcome.imported)} versions from {config.import_history}; {message}"
    except Exception as error:
        return _fail(args, name, error, **outcome.as_result())
    document = result.success(name, message, **outcome.as_result())
    return migrate_output.publish(document, args, f"dbops {name}: {message}")


def _run_rehearse(args: argparse.Namespace) -> int:
    try:
        config, migrations = _run_config(args), _load_migrations(args)
    except Exception as error:
        return _fail(args, "migrate rehearse", error)
    return migrate_rehearse.run(args, config, migrations)


def _run_down(args: argparse.Namespace) -> int:
    name = "migrate down"
    outcome = session.RunOutcome()
    try:
        config = _run_config(args, target=args.to_version, allow_down=True)
        migrations = _load_migrations(args)
        with connect.session(args) as connection, \
                connect.translated_errors("migrating down"):
            session.run(connection, migrations, config, outcome)
        applied = outcome.report.applied if outcome.report else []
        message = (f"rolled back {len(applied)} migrations; {migrate_messages.version(outcome.previous_version)} → "
                   f"{migrate_messages.version(outcome.current_version)}")
        if config.apply.dry_run:
            message = f"dry run: would roll back {len(applied)} migrations"
    except Exception as error:
        return _fail(args, name, error, **outcome.as_result())
    document = result.success(name, message, **outcome.as_result())
    return migrate_output.publish(document, args, f"dbops {name}: {message}")


def _run_status(args: argparse.Namespace) -> int:
    name = "migrate status"
    try:
        table = history.HistoryTable.parse(args.history_table)
        migrations = _load_migrations(args) if (args.source or args.inline_file) else []
        with connect.session(args) as connection, \
                connect.translated_errors("reading the history"):
            fields = session.status(connection, migrations, table)
    except Exception as error:
        return _fail(args, name, error)
    message = f"at {migrate_messages.version(fields['currentVersion'])}, {len(fields['pending'])} pending"
    if fields["drift"]:
        drift = errors.MigrationError(f"{message}; drift: {fields['drift']}", reason="MigrationDrift")
        return _fail(args, name, drift, **fields)
    document = result.success(name, message, **fields)
    return migrate_output.publish(document, args, f"dbops {name}: {message}")


def _run_import(args: argparse.Namespace) -> int:
    name = "migrate import"
    try:
        table = history.HistoryTable.parse(args.history_table)
        migrations = _load_migrations(args)
        with connect.session(args) as connection, connect.translated_errors("importing the history"):
            imported = adopt.import_history(connection, migrations, table, args.tool, args.from_table)
    except Exception as error:
        return _fail(args, name, error)
    current = imported.versions[-1] if imported.versions else None
    message = f"imported {len(imported.versions)} versions from {args.tool}; at {migrate_messages.version(current)}"
    if imported.repeatables:
        changed = [label for label, state in imported.repeatables.items() if state == "changed"]
        message += (f"; {len(imported.repeatables)} repeatables, "
                    + (f"changed since {args.tool} ran them, re-run on the next apply: {', '.join(changed)}"
                       if changed else "none changed"))
    document = result.success(name, message, imported=imported.versions, repeatables=imported.repeatables,
                              currentVersion=current)
    return migrate_output.publish(document, args, f"dbops {name}: {message}")


def _run_repair(args: argparse.Namespace) -> int:
    name = "migrate repair"
    try:
        table = history.HistoryTable.parse(args.history_table)
        migrations = _load_migrations(args)
        with connect.session(args) as connection, connect.translated_errors("repairing the history"):
            repaired = adopt.repair(connection, migrations, table, args.repair_version, args.reason)
    except Exception as error:
        return _fail(args, name, error)
    message = f"version {repaired['version']}: recorded the new checksum ({repaired['reason']})"
    document = result.success(name, message, repaired=repaired)
    return migrate_output.publish(document, args, f"dbops {name}: {message}")


def _fail(args: argparse.Namespace, name: str, error: BaseException, **fields: Any) -> int:
    document = result.failure(name, error, **fields)
    return migrate_output.publish(document, args, f"dbops {name} failed: {document['message']}")
