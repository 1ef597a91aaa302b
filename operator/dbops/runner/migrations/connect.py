"""Connecting to PostgreSQL for migrations and checks (psycopg 3), with errors mapped to the dbops tree.

Credentials come only from the environment: ``DBOPS_DATABASE_URI`` and/or the libpq
variables (``PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE``, which libpq reads
itself). The flags ``--host --port --dbname --user --sslmode`` override them; there is
deliberately no password flag.

(A general connection helper is planned in ``dbops.runner.connection``; this module is
the migrations' own small copy until that lands.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from dbops import errors
from dbops.redaction import redact

URI_VARIABLE = "DBOPS_DATABASE_URI"
APPLICATION_NAME = "dbops"


@dataclass(frozen=True)
class ConnectionTarget:
    """Where to connect: an optional URI from the environment plus keyword overrides."""

    uri: str = ""
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    sslmode: str | None = None
    connect_timeout: int = 10

    def keywords(self) -> dict[str, str]:
        """libpq keywords that override the URI and the PG* environment."""
        given = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user,
                 "sslmode": self.sslmode}
        words = {key: str(value) for key, value in given.items() if value not in (None, "")}
        words["connect_timeout"] = str(self.connect_timeout)
        return words

    def describe(self) -> str:
        """A redacted description for messages."""
        conninfo = psycopg.conninfo.make_conninfo(self.uri, **self.keywords())
        return redact(conninfo, os.environ.get("PGPASSWORD"))


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host --port --dbname --user --sslmode`` (never a password) to a parser."""
    group = parser.add_argument_group("connection (credentials only via DBOPS_DATABASE_URI / PG* env vars)")
    group.add_argument("--host", help="server host (overrides the URI and PGHOST)")
    group.add_argument("--port", type=int, help="server port (overrides the URI and PGPORT)")
    group.add_argument("--dbname", help="database name (overrides the URI and PGDATABASE)")
    group.add_argument("--user", help="user name (overrides the URI and PGUSER)")
    group.add_argument("--sslmode", help="libpq sslmode (overrides the URI and PGSSLMODE)")
    group.add_argument("--connect-timeout", type=int, default=10, help="seconds (default 10)")


def target_from_arguments(args: argparse.Namespace) -> ConnectionTarget:
    """The connection target from parsed flags and ``DBOPS_DATABASE_URI``."""
    return ConnectionTarget(
        uri=os.environ.get(URI_VARIABLE, ""),
        host=args.host,
        port=args.port,
        dbname=args.dbname,
        user=args.user,
        sslmode=args.sslmode,
        connect_timeout=args.connect_timeout,
    )


def connect(target: ConnectionTarget, *, application_name: str = APPLICATION_NAME) -> psycopg.Connection[Any]:
    """Open an autocommit connection; refused, bad password and missing database become dbops errors."""
    try:
        conninfo = psycopg.conninfo.make_conninfo(
            target.uri, application_name=application_name, **target.keywords()
        )
        connection = psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as error:
        raise map_connect_error(error, target) from None
    except psycopg.ProgrammingError as error:
        text = redact(str(error).strip(), os.environ.get("PGPASSWORD"))
        raise errors.InvalidSpecError(f"invalid connection parameters: {text}") from None
    return connection


def map_connect_error(error: psycopg.OperationalError, target: ConnectionTarget) -> errors.DbopsError:
    """Translate a failed connection attempt into the dbops exception tree (redacted)."""
    text = redact(str(error).strip(), os.environ.get("PGPASSWORD"))
    lowered = text.lower()
    where = target.describe()
    if "password authentication failed" in lowered or "no password supplied" in lowered or (
        "authentication failed" in lowered
    ):
        return errors.AuthenticationError(f"PostgreSQL refused the credentials ({where}): {text}")
    if "does not exist" in lowered and "database" in lowered:
        return errors.NotFoundError(f"database does not exist ({where}): {text}")
    if "role" in lowered and "does not exist" in lowered:
        return errors.AuthenticationError(f"PostgreSQL refused the credentials ({where}): {text}")
    if "invalid" in lowered and ("uri" in lowered or "connection option" in lowered or "sslmode" in lowered):
        return errors.InvalidSpecError(f"invalid connection parameters ({where}): {text}")
    return errors.TransientError(f"cannot reach PostgreSQL ({where}): {text}")


@contextlib.contextmanager
def translated_errors(doing: str) -> Iterator[None]:
    """Turn stray PostgreSQL errors into dbops errors: a lost connection is transient, the rest permanent."""
    try:
        yield
    except psycopg.OperationalError as error:
        text = redact(str(error).strip(), os.environ.get("PGPASSWORD"))
        raise errors.TransientError(f"lost the connection to PostgreSQL while {doing}: {text}") from None
    except psycopg.Error as error:
        primary = error.diag.message_primary or str(error).strip()
        text = redact(f"{primary} (SQLSTATE {error.sqlstate or '?'})", os.environ.get("PGPASSWORD"))
        raise errors.MigrationError(f"PostgreSQL refused {doing}: {text}") from None
