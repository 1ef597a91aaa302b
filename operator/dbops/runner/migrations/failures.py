"""Failed migration statements described for people: the migration, the statement, PostgreSQL's error, what stays."""

from __future__ import annotations

import psycopg
from psycopg import errors as pgerrors

from dbops import errors
from dbops.runner.migrations import plan
from dbops.runner.migrations import statements as sqlstatements

NO_TRANSACTION_HINT = (
    "this statement cannot run inside a transaction; put the line '-- dbops:no-transaction' in the "
    "migration to run it outside one (alone, statement by statement)"
)


class StatementFailed(Exception):
    """A statement of a migration raised a PostgreSQL error (internal; becomes a dbops error)."""

    def __init__(self, statement: sqlstatements.Statement, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.statement = statement
        self.error = error


def describe(step: plan.Step, failure: StatementFailed, attempts: int, lock_timeout: str) -> errors.DbopsError:
    """An error naming the migration, the statement and the PostgreSQL error."""
    statement, error = failure.statement, failure.error
    total = len(step.script.statements)
    diag = error.diag
    described = pg_text(error)
    head = (
        f"migration {step.migration.label} ({step.direction}) failed at statement {statement.index} of {total} "
        f"(line {statement.line}): {statement.summary()}: {described}"
    )
    if isinstance(error, pgerrors.ActiveSqlTransaction) and not step.script.no_transaction:
        return errors.MigrationError(f"{head}; {NO_TRANSACTION_HINT}")
    if step.script.no_transaction:
        head += _committed_before(step, statement)
    if isinstance(error, pgerrors.LockNotAvailable):
        return errors.LockTimeoutError(
            f"{head}; gave up after {attempts} attempts with lock_timeout {lock_timeout} "
            "(a long transaction holds a conflicting lock)"
        )
    if diag.message_hint:
        head += f"; HINT: {diag.message_hint}"
    if not step.script.no_transaction:
        head += "; the migration was rolled back"
    return errors.MigrationError(head)


def pg_text(error: psycopg.Error) -> str:
    """PostgreSQL's error as one line: severity, message, SQLSTATE and detail."""
    diag = error.diag
    primary = diag.message_primary or str(error).strip()
    text = f"{diag.severity or 'ERROR'}: {primary} (SQLSTATE {error.sqlstate or '?'})"
    if diag.message_detail:
        text += f"; DETAIL: {diag.message_detail}"
    return text


def _committed_before(step: plan.Step, statement: sqlstatements.Statement) -> str:
    """Which earlier statements of a no-transaction migration were committed and stay."""
    done = step.script.statements[: statement.index - 1]
    if not done:
        return "; no earlier statement of this no-transaction migration ran"
    shown = ", ".join(f"{s.index} ({s.summary(60)})" for s in done[:3]) + (", …" if len(done) > 3 else "")
    return (f"; statements 1-{len(done)} of this no-transaction migration were committed and stay: {shown}; "
            "a re-run runs the whole file again, so they must be idempotent (IF NOT EXISTS)")
