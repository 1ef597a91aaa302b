"""Pre-migration checks (``dbops check``): connectivity, privileges, connections, blockers, size.

Connectivity and version, privileges, connections, blocking transactions and locks, database size: each
passes, warns or fails with a detail line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from dbops import errors

Connection = psycopg.Connection[Any]
LEVELS = ("pass", "warn", "fail")
MIN_SUPPORTED_MAJOR = 13


@dataclass(frozen=True)
class PreCheck:
    """The outcome of one pre-check."""

    name: str
    result: str
    detail: str

    def as_result(self) -> dict[str, Any]:
        """The ``preChecks[]`` entry of the result JSON."""
        return {"name": self.name, "result": self.result, "detail": self.detail}


@dataclass(frozen=True)
class PreCheckConfig:
    """Thresholds of the pre-checks."""

    schema: str = "public"
    max_active_connections: int = 100
    max_blocking_transaction_seconds: float = 60.0
    fail_on: str = "fail"


def run_prechecks(connection: Connection, config: PreCheckConfig) -> list[PreCheck]:
    """Run every pre-check (the connection already proves connectivity)."""
    return [
        check_server(connection),
        check_privileges(connection, config.schema),
        check_connections(connection, config.max_active_connections),
        check_blocking_transactions(connection, config.max_blocking_transaction_seconds),
        check_database_size(connection),
    ]


def failing(results: list[PreCheck], fail_on: str) -> list[PreCheck]:
    """The results at or above the ``fail_on`` level (``fail`` or ``warn``)."""
    if fail_on not in ("fail", "warn"):
        raise errors.InvalidSpecError(f"failOn must be fail or warn, not {fail_on!r}")
    threshold = LEVELS.index(fail_on)
    return [r for r in results if LEVELS.index(r.result) >= threshold]


def raise_on_failures(results: list[PreCheck], fail_on: str) -> None:
    """Raise VerificationError naming the failing checks."""
    bad = failing(results, fail_on)
    if bad:
        raise errors.VerificationError(
            "pre-checks failed: " + "; ".join(f"{r.name} {r.result}: {r.detail}" for r in bad),
            reason="PreChecksFailed",
        )


def check_server(connection: Connection) -> PreCheck:
    """Connectivity and server version."""
    row = connection.execute("SELECT current_setting('server_version'), current_database(), current_user").fetchone()
    assert row is not None
    version, database, user = row
    major = connection.info.server_version // 10000
    detail = f"connected to {database} as {user}; PostgreSQL {version}"
    if connection.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
        return PreCheck("connectivity", "fail", detail + "; the server is a read-only standby")
    if major < MIN_SUPPORTED_MAJOR:
        return PreCheck("connectivity", "warn", detail + f"; versions below {MIN_SUPPORTED_MAJOR} are untested")
    return PreCheck("connectivity", "pass", detail)


def check_privileges(connection: Connection, schema: str) -> PreCheck:
    """The current user may create objects in the target schema."""
    row = connection.execute(
        "SELECT n.oid IS NOT NULL,"
        " n.oid IS NOT NULL AND has_schema_privilege(current_user, n.oid, 'CREATE'),"
        " n.oid IS NOT NULL AND has_schema_privilege(current_user, n.oid, 'USAGE')"
        " FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = %s",
        (schema,),
    ).fetchone()
    assert row is not None
    exists, can_create, can_use = row
    if not exists:
        return PreCheck("privileges", "fail", f"schema {schema} does not exist")
    if not (can_create and can_use):
        return PreCheck("privileges", "fail", f"current user lacks CREATE/USAGE on schema {schema}")
    return PreCheck("privileges", "pass", f"current user may create in schema {schema}")


def check_connections(connection: Connection, maximum: int) -> PreCheck:
    """Other sessions connected to this database against a threshold (warn above 80 %)."""
    row = connection.execute(
        "SELECT count(*) FILTER (WHERE state IS DISTINCT FROM 'idle'), count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    ).fetchone()
    assert row is not None
    active, total = int(row[0]), int(row[1])
    detail = f"{total} other connections ({active} active), maximum {maximum}"
    if total > maximum:
        return PreCheck("activeConnections", "fail", detail)
    if total > 0.8 * maximum:
        return PreCheck("activeConnections", "warn", detail)
    return PreCheck("activeConnections", "pass", detail)


def check_blocking_transactions(connection: Connection, max_seconds: float) -> PreCheck:
    """Transactions older than ``max_seconds`` (they would block DDL), worse when they hold relation locks."""
    rows = connection.execute(
        "SELECT a.pid, a.state, extract(epoch FROM now() - a.xact_start)::float8,"
        " (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted"
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
        " FROM pg_stat_activity a"
        " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL"
        " AND now() - a.xact_start > make_interval(secs => %s)"
        " ORDER BY a.xact_start",
        (max_seconds,),
    ).fetchall()
    if not rows:
        return PreCheck("blockingTransactions", "pass", f"no transaction older than {max_seconds:g}s")
    locking = [row for row in rows if row[3]]
    described = ", ".join(f"pid {pid} {state} for {age:.0f}s ({locks} locks)" for pid, state, age, locks in rows[:5])
    if locking:
        return PreCheck("blockingTransactions", "fail",
                        f"{len(locking)} transactions older than {max_seconds:g}s hold relation locks that would "
                        f"block DDL: {described}")
    return PreCheck("blockingTransactions", "warn",
                    f"{len(rows)} transactions older than {max_seconds:g}s (no relation locks): {described}")


def check_database_size(connection: Connection) -> PreCheck:
    """The database size (informational: a pre-migration backup needs about as much space)."""
    row = connection.execute(
        "SELECT pg_database_size(current_database()), pg_size_pretty(pg_database_size(current_database()))"
    ).fetchone()
    assert row is not None
    return PreCheck("databaseSize", "pass", f"database size {row[1]} ({row[0]} bytes)")
