"""The session-level advisory lock that serializes migration runners on one database.

The lock belongs to the connection's session, so it disappears with the session: a
killed runner never leaves it stuck. ``client_connection_check_interval`` makes the
server notice a vanished client within a second even while a statement is running.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from dbops import errors

POLL_SECONDS = 0.1
Connection = psycopg.Connection[Any]


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (the history table)."""
    digest = hashlib.sha256(f"dbops-migrations:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def watch_client_connection(connection: Connection) -> None:
    """Ask the server to check every second that we are still there (PostgreSQL 14+)."""
    with contextlib.suppress(psycopg.Error):
        connection.execute("SET client_connection_check_interval = '1s'")


@contextlib.contextmanager
def advisory_lock(connection: Connection, name: str, wait_seconds: float) -> Iterator[None]:
    """Hold the advisory lock for ``name``; wait up to ``wait_seconds``, then raise LockTimeoutError."""
    key = lock_key(name)
    deadline = time.monotonic() + wait_seconds
    while True:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            break
        if time.monotonic() >= deadline:
            holder = _holder(connection, key)
            raise errors.LockTimeoutError(
                f"another migration holds the lock on {name}{holder}; gave up after {wait_seconds:g}s "
                "(retry later, or raise --lock-wait-timeout)"
            )
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        if not connection.closed:
            with contextlib.suppress(psycopg.Error):
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _holder(connection: Connection, key: int) -> str:
    """`` (held by pid N, application X)`` when visible, else an empty string."""
    with contextlib.suppress(psycopg.Error):
        row = connection.execute(
            "SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s LIMIT 1",
            (key,),
        ).fetchone()
        if row:
            return f" (held by pid {row[0]}, application {row[1] or '?'})"
    return ""
