"""Executing a plan: one transaction per migration (or per statement), timeouts, retries, history.

Each migration runs in its own transaction, or statement by statement when marked ``-- dbops:no-transaction``,
with per-migration ``lock_timeout``/``statement_timeout`` and retries on lock timeouts, recording the history in
the same transaction; dry runs roll everything back."""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq

from dbops import errors
from dbops.api import versions
from dbops.runner.migrations import batch, failures, history, leftovers, plan, rebuild, sequences, source
from dbops.runner.migrations import statements as sqlstatements
from dbops.runner.migrations.report import AppliedMigration, ApplyOptions, ApplyReport

__all__ = ["AppliedMigration", "ApplyOptions", "ApplyReport", "execute_plan"]

Connection = psycopg.Connection[Any]
MAX_BACKOFF_SECONDS = 30.0
_SUCCESS = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


def execute_plan(
    connection: Connection,
    migration_plan: plan.Plan,
    table: history.HistoryTable,
    options: ApplyOptions,
    *,
    baseline: list[source.Migration] | None = None,
    report: ApplyReport | None = None,
) -> ApplyReport:
    """Run the plan's steps in order; the caller holds the advisory lock and checked drift and baseline.

    ``report`` (when given) is filled as steps finish, so the caller sees the progress after a failure.
    """
    report = report if report is not None else ApplyReport(dry_run=options.dry_run)
    # INVALID indexes exist only when an earlier run (or a no-transaction step of this one) left them: a
    # transactional CREATE INDEX commits a valid index or rolls back. So the per-step search for an INVALID
    # index a CREATE INDEX names (one query per statement) only runs while the database has any; someone else
    # leaving one mid-run is still caught by the post-migration invalidIndexes check.
    invalid = _InvalidIndexes(connection)
    if options.dry_run:
        before = sequences.snapshot(connection)
        try:
            with connection.transaction(force_rollback=True):
                table.ensure(connection)
                _record_baseline(connection, table, baseline or [], migration_plan.baseline_version)
                for step in migration_plan.steps:
                    if step.script.no_transaction:
                        report.skipped.append(step.migration.version)
                        continue
                    started = time.monotonic()
                    _with_lock_retries(
                        step, options,
                        functools.partial(_run_pipelined, connection, step, table, options, own_transaction=False,
                                          check_invalid=invalid.any),
                        retries=0,
                    )
                    report.applied.append(_applied(step, started))
        finally:
            # Sequence positions survive the rollback: read them now and put back what the dry run drew.
            with contextlib.suppress(psycopg.Error):
                report.sequences_not_restored = sequences.restore(connection, before, sequences.snapshot(connection))
        return report

    with connection.transaction():
        table.ensure(connection)
        _record_baseline(connection, table, baseline or [], migration_plan.baseline_version)
    steps = migration_plan.steps
    index = 0
    while index < len(steps):
        step = steps[index]
        if _batchable(connection, step, invalid):
            batched = list(itertools.takewhile(lambda s: not s.script.no_transaction,
                                               steps[index:index + batch.MAX_STEPS]))
            _run_batches(connection, batched, table, options, report)
            index += len(batched)
            continue
        started = time.monotonic()
        rebuilt: list[str] = []
        if step.script.no_transaction:
            try:
                retried = _run_without_transaction(connection, step, table, options, rebuilt)
            finally:
                invalid.refresh()
        else:
            retried = _with_lock_retries(
                step, options, functools.partial(_run_pipelined, connection, step, table, options, rebuilt=rebuilt,
                                                 check_invalid=invalid.any)
            )
        report.applied.append(_applied(step, started, retried, tuple(rebuilt)))
        index += 1
    return report


def _batchable(connection: Connection, step: plan.Step, invalid: _InvalidIndexes) -> bool:
    """A transactional step that needs no INVALID-index cleanup, on a connection outside any transaction."""
    return (not step.script.no_transaction and not invalid.any()
            and connection.info.transaction_status == pq.TransactionStatus.IDLE)


def _run_batches(connection: Connection, steps: list[plan.Step], table: history.HistoryTable,
                 options: ApplyOptions, report: ApplyReport) -> None:
    """Run transactional steps a pipeline at a time; after a lock timeout, wait and resend from the step that
    failed (up to ``lock_retries`` times for each step); any other failure stops the run, naming the step."""
    tries = 0
    while steps:
        outcome = batch.run(connection, steps, table, options.lock_timeout, options.statement_timeout)
        for position, (step, duration_ms) in enumerate(zip(steps, outcome.durations_ms, strict=False)):
            report.applied.append(AppliedMigration(step.migration.version, step.migration.name, step.direction,
                                                   duration_ms, tries if position == 0 else 0))
            tries = 0
        if outcome.failed_step is None or outcome.error is None:
            return
        steps = steps[outcome.failed_step:]
        failed, error = steps[0], outcome.error
        if isinstance(error, pgerrors.LockNotAvailable) and tries < options.lock_retries:
            tries += 1
            time.sleep(min(options.retry_backoff_seconds * 2 ** (tries - 1), MAX_BACKOFF_SECONDS))
            continue
        if outcome.failed_statement is None:
            raise errors.MigrationError(
                f"migration {failed.migration.label} ({failed.direction}) ran its statements but failed when "
                f"recording or committing it: {failures.pg_text(error)}; the migration was rolled back"
            )
        raise failures.describe(failed, failures.StatementFailed(outcome.failed_statement, error), tries + 1,
                                options.lock_timeout)


class _InvalidIndexes:
    """Whether the database has any INVALID index (read at the start and after each no-transaction step)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.refresh()

    def refresh(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._found = bool(leftovers.invalid_indexes(self._connection))
            return
        self._found = True  # unknown: check every step, as before

    def any(self) -> bool:
        return self._found


def _run_pipelined(connection: Connection, step: plan.Step, table: history.HistoryTable, options: ApplyOptions,
                   *, own_transaction: bool = True, rebuilt: list[str] | None = None,
                   check_invalid: Callable[[], bool] = lambda: True) -> None:
    """BEGIN, the timeouts, every statement, the history row and COMMIT in one pipeline (one round trip).

    PostgreSQL skips the rest of the pipeline after an error, and the transaction rolls back; the
    failing statement is the first one without a successful result. An INVALID index that a
    ``CREATE INDEX`` of the migration names (left by an earlier failed build) is dropped first in the
    same transaction, so ``IF NOT EXISTS`` cannot skip it. BEGIN and COMMIT are sent as statements:
    psycopg's ``transaction()`` inside a pipeline syncs on entering and leaving it (three more round trips).
    """
    stale = _invalid_named_indexes(connection, step) if check_invalid() else []
    # Inside a caller's transaction (a rehearsal keeps every lock until it has looked), a savepoint, as
    # psycopg's nested transaction() would do.
    nested = own_transaction and connection.info.transaction_status != pq.TransactionStatus.IDLE
    begin, end = ("SAVEPOINT dbops_migration", "RELEASE SAVEPOINT dbops_migration") if nested else ("BEGIN", "COMMIT")
    sent: list[tuple[sqlstatements.Statement, psycopg.Cursor[Any]]] = []
    try:
        with connection.pipeline():
            if own_transaction:
                connection.execute(begin)
            _set_timeouts(connection, options, local=True)
            for statement, name in stale:
                sent.append((statement, connection.execute(leftovers.drop_statement(name, concurrently=False))))
            for statement in step.script.statements:
                sent.append((statement, connection.execute(statement.text.encode(), prepare=False)))
            _record_step(connection, table, step, None)
            if own_transaction:
                connection.execute(end)
    except psycopg.Error as error:
        if own_transaction:
            _roll_back(connection, nested=nested)
        failed = next((statement for statement, cursor in sent if not _succeeded(cursor)), None)
        if failed is None:
            raise
        raise failures.StatementFailed(failed, error) from error
    except BaseException:
        if own_transaction:
            _roll_back(connection, nested=nested)
        raise
    if rebuilt is not None:
        rebuilt += [name for _, name in stale]


def _roll_back(connection: Connection, *, nested: bool) -> None:
    """Undo the failed migration the pipeline left open (a failed COMMIT has already ended it)."""
    with contextlib.suppress(psycopg.Error):
        if nested:
            connection.execute("ROLLBACK TO SAVEPOINT dbops_migration")
            connection.execute("RELEASE SAVEPOINT dbops_migration")
        elif connection.info.transaction_status != pq.TransactionStatus.IDLE:
            connection.execute("ROLLBACK")


def _invalid_named_indexes(connection: Connection, step: plan.Step) -> list[tuple[sqlstatements.Statement, str]]:
    """(statement, index) for each ``CREATE INDEX`` of the step whose named index exists and is INVALID."""
    found = []
    for statement in step.script.statements:
        ref = leftovers.index_created_by(statement)
        if ref is not None and (invalid := leftovers.invalid_named_index(connection, ref)) is not None:
            found.append((statement, invalid[1]))
    return found


def _succeeded(cursor: psycopg.Cursor[Any]) -> bool:
    result = cursor.pgresult
    return result is not None and result.status in _SUCCESS


def _run_without_transaction(connection: Connection, step: plan.Step, table: history.HistoryTable,
                             options: ApplyOptions, rebuilt: list[str]) -> int:
    """Run the statements one by one in autocommit; return the number of lock-timeout retries.

    Afterwards (and after a failure) check what the statements created or touched: an INVALID index
    fails the migration and is dropped (or named, when it cannot be) so the next run rebuilds it; it is
    never recorded as applied.
    """
    started = time.monotonic()
    retried = 0
    _set_timeouts(connection, options, local=False)
    invalid_before = leftovers.invalid_indexes(connection)
    try:
        for statement in step.script.statements:
            retried += _with_lock_retries(
                step, options, functools.partial(rebuild.execute_rebuilding, connection, statement, rebuilt)
            )
        broken, not_valid = leftovers.problems_after(connection, step.script.statements, invalid_before)
        if broken or not_valid:
            dropped, kept = leftovers.drop_invalid(connection, broken)
            raise errors.MigrationError(
                f"migration {step.migration.label} ({step.direction}) ran its {len(step.script.statements)} "
                f"statements but left broken objects: {leftovers.describe(dropped, kept, not_valid)}; "
                "not recorded as applied", reason="BrokenObjects",
            )
    except errors.DbopsError as error:
        failure: errors.DbopsError = error
        with contextlib.suppress(psycopg.Error):
            if error.reason != "BrokenObjects":
                broken, not_valid = leftovers.problems_after(connection, step.script.statements, invalid_before)
                if broken or not_valid:
                    dropped, kept = leftovers.drop_invalid(connection, broken)
                    failure = type(error)(f"{error}; {leftovers.describe(dropped, kept, not_valid)}",
                                          reason=error.reason)
        with contextlib.suppress(psycopg.Error):
            if step.direction == "up":
                table.record(connection, version=step.migration.version, name=step.migration.name,
                             checksum=step.migration.checksum, duration_ms=_elapsed_ms(started), success=False,
                             kind=step.migration.kind)
        if failure is not error:
            raise failure from None
        raise
    finally:
        with contextlib.suppress(psycopg.Error):
            connection.execute("RESET lock_timeout")
            connection.execute("RESET statement_timeout")
    with connection.transaction():
        _record_step(connection, table, step, _elapsed_ms(started))
    return retried


def _with_lock_retries(step: plan.Step, options: ApplyOptions, attempt: Callable[[], None],
                       retries: int | None = None) -> int:
    """Call ``attempt``; on a lock timeout wait (doubling, at most 30 s) and retry up to ``lock_retries`` times.

    Returns how many retries it took.
    """
    retries = options.lock_retries if retries is None else retries
    tries = 0
    while True:
        try:
            attempt()
            return tries
        except failures.StatementFailed as failure:
            if isinstance(failure.error, pgerrors.LockNotAvailable) and tries < retries:
                tries += 1
                time.sleep(min(options.retry_backoff_seconds * 2 ** (tries - 1), MAX_BACKOFF_SECONDS))
                continue
            raise failures.describe(step, failure, tries + 1, options.lock_timeout) from None


def _set_timeouts(connection: Connection, options: ApplyOptions, *, local: bool) -> None:
    batch.set_timeouts(connection, options.lock_timeout, options.statement_timeout, local=local)


def _record_step(connection: Connection, table: history.HistoryTable, step: plan.Step,
                 duration_ms: int | None) -> None:
    batch.record_step(connection, table, step, duration_ms)


def _record_baseline(connection: Connection, table: history.HistoryTable, migrations: list[source.Migration],
                     baseline_version: str | None) -> None:
    """Mark the source's versions up to the baseline as applied (kind ``baseline``)."""
    if not baseline_version:
        return
    adopted = [m for m in source.versioned(migrations) if m.number <= versions.key(baseline_version)]
    for migration in adopted:
        table.record(connection, version=migration.version, name=migration.name, checksum=migration.checksum,
                     duration_ms=0, success=True, kind="baseline")
    if not adopted:
        table.record(connection, version=baseline_version, name="baseline", checksum="", duration_ms=0,
                     success=True, kind="baseline")


def _applied(step: plan.Step, started: float, lock_retries: int = 0,
             rebuilt: tuple[str, ...] = ()) -> AppliedMigration:
    return AppliedMigration(step.migration.version, step.migration.name, step.direction, _elapsed_ms(started),
                            lock_retries, rebuilt)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
