"""Consecutive transactional migrations sent as one libpq pipeline: one round trip for all of them (P6).

Each migration is its own ``BEGIN … COMMIT`` with its timeouts and history row. PostgreSQL guarantees what
happens on an error: the migrations committed before it stay committed, the one that failed rolls back, and
everything after it up to the pipeline's sync is skipped without running. So a batch behaves like running the
migrations one by one and stopping at the first failure, without waiting for each commit before sending the next.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq

from dbops.runner.migrations import history, plan
from dbops.runner.migrations import statements as sqlstatements

Connection = psycopg.Connection[Any]
MAX_STEPS = 100  # migrations per round trip: bounds what one pipeline holds in memory
_SUCCESS = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)
_ELAPSED_MS = "SELECT (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint"


@dataclass
class BatchOutcome:
    """How far a batch got: ``durations_ms`` of the committed steps (in order), and the failure if any."""

    durations_ms: list[int] = field(default_factory=list)
    failed_step: int | None = None
    """Index in the batch of the step that failed (it rolled back; the later ones did not run)."""
    failed_statement: sqlstatements.Statement | None = None
    """The statement that failed, or None when the step's history row or its COMMIT did."""
    error: psycopg.Error | None = None


def set_timeouts(connection: Connection, lock_timeout: str, statement_timeout: str, *, local: bool) -> None:
    """``lock_timeout`` and ``statement_timeout`` for the transaction (``local``) or the session."""
    connection.execute(
        "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
        (lock_timeout, local, statement_timeout, local),
    )


def reset_timeouts(connection: Connection) -> None:
    """Back to the session's defaults after ``set_timeouts(local=False)`` (best effort: the connection may be
    gone, and then so are its settings)."""
    with contextlib.suppress(psycopg.Error):
        connection.execute("RESET lock_timeout")
        connection.execute("RESET statement_timeout")


def record_step(connection: Connection, table: history.HistoryTable, step: plan.Step,
                duration_ms: int | None) -> psycopg.Cursor[Any]:
    """The history change of a step: its row after an up migration, none after a down migration. The cursor
    returns the milliseconds the step's transaction has taken (the row's ``duration_ms``)."""
    migration = step.migration
    if step.direction == "up":
        return table.record(connection, version=migration.version, name=migration.name,
                            checksum=migration.checksum, duration_ms=duration_ms, success=True, kind=migration.kind)
    table.forget(connection, migration.version)
    return connection.execute(_ELAPSED_MS)


def run(connection: Connection, steps: list[plan.Step], table: history.HistoryTable, lock_timeout: str,
        statement_timeout: str) -> BatchOutcome:
    """Send every step (each in its own transaction) in one pipeline; the connection must be idle, in autocommit.

    The timeouts are set for the session around the batch rather than per transaction: the same limits for
    every statement of every step, one statement per step fewer (P6)."""
    sent: list[_Sent] = []
    outcome = BatchOutcome()
    # execute() may raise mid-pipeline (an error result arrives while later steps are queued): each step's
    # cursors are kept as they are made, and the statement being sent is remembered.
    sending: sqlstatements.Statement | None = None
    set_timeouts(connection, lock_timeout, statement_timeout, local=False)
    try:
        with connection.pipeline():
            for step in steps:
                current = _Sent()
                sent.append(current)
                connection.execute("BEGIN")
                for statement in step.script.statements:
                    sending = statement
                    current.statements.append((statement, connection.execute(statement.text.encode(),
                                                                             prepare=False)))
                sending = None
                current.elapsed = record_step(connection, table, step, None)
                current.commit = connection.execute("COMMIT")
    except psycopg.Error as error:
        outcome.error = error
        _roll_back(connection)
    except BaseException:
        _roll_back(connection)
        raise
    finally:
        reset_timeouts(connection)
    for index, step_sent in enumerate(sent):
        if step_sent.commit is None or step_sent.elapsed is None or not _committed(step_sent.commit):
            if outcome.error is None:  # cannot happen: a step that did not commit raised an error
                raise AssertionError("a migration of the batch did not commit, and no error was raised")
            outcome.failed_step = index
            outcome.failed_statement = next((s for s, cursor in step_sent.statements if not _succeeded(cursor)),
                                            sending if index == len(sent) - 1 else None)
            return outcome
        row = step_sent.elapsed.fetchone()
        outcome.durations_ms.append(int(row[0]) if row and row[0] is not None else 0)
    if outcome.error is not None:  # every step sent committed: the error came before the next one was queued
        outcome.failed_step = len(sent)
    return outcome


@dataclass
class _Sent:
    """The cursors of one step in the pipeline, as far as it was queued."""

    statements: list[tuple[sqlstatements.Statement, psycopg.Cursor[Any]]] = field(default_factory=list)
    elapsed: psycopg.Cursor[Any] | None = None
    commit: psycopg.Cursor[Any] | None = None


def _roll_back(connection: Connection) -> None:
    """End the failed step's transaction (PostgreSQL keeps it open, aborted, after the pipeline's sync)."""
    if connection.info.transaction_status != pq.TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error):
            connection.execute("ROLLBACK")


def _committed(cursor: psycopg.Cursor[Any]) -> bool:
    # COMMIT of an aborted transaction answers ROLLBACK; after an error a pipeline skips the rest unanswered.
    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.COMMAND_OK and result.command_status == b"COMMIT"


def _succeeded(cursor: psycopg.Cursor[Any]) -> bool:
    result = cursor.pgresult
    return result is not None and result.status in _SUCCESS
