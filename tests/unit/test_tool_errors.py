"""pg_dump/pg_restore output → error class: a server that went away mid-work is transient (the Job retries)."""

from __future__ import annotations

import pytest

from dbops import errors
from dbops.runner import restore_pipes, tool_errors
from dbops.runner.connection import ConnectionSettings

SETTINGS = ConnectionSettings(params={"host": "pg.prod.svc", "port": "5432", "dbname": "app", "user": "app"},
                              password="s3cret")
LOST = [
    "pg_restore: error: could not execute query: server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally",
    "pg_dump: error: Dumping the contents of table \"big\" failed: PQgetResult() failed.\n"
    "pg_dump: detail: Error message from server: FATAL:  terminating connection due to administrator command",
    "pg_restore: error: could not execute query: FATAL:  the database system is shutting down",
]


@pytest.mark.parametrize("stderr", LOST)
def test_a_lost_server_is_transient_and_named(stderr: str) -> None:
    for error in (tool_errors.tool_error("pg_dump", stderr, SETTINGS),
                  restore_pipes.pg_restore_error(stderr, SETTINGS)):
        assert isinstance(error, errors.TransientError), error
        assert "app@pg.prod.svc:5432/app" in str(error)


def test_a_failing_statement_still_stops_the_restore_for_good() -> None:
    error = restore_pipes.pg_restore_error(
        'pg_restore: error: could not execute query: ERROR:  relation "users" already exists', SETTINGS)
    assert isinstance(error, errors.PermanentError) and error.reason == "RestoreFailed"
