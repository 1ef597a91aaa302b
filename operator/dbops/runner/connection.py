"""PostgreSQL connection settings from the environment and flags, and clear connection errors."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from dbops import errors
from dbops.redaction import redact

URI_ENV = "DBOPS_DATABASE_URI"
OLDEST_SUPPORTED_SERVER = 120000

# libpq keywords and the environment variables the runner reads for them (never a password flag).
_ENV_KEYWORDS = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCERT": "sslcert",
    "PGSSLKEY": "sslkey",
    "PGAPPNAME": "application_name",
    "PGCONNECT_TIMEOUT": "connect_timeout",
}


@dataclasses.dataclass(frozen=True)
class ConnectionSettings:
    """How to reach one PostgreSQL database: libpq keywords, the password kept apart."""

    params: Mapping[str, str]
    password: str | None = None

    @property
    def dbname(self) -> str:
        """The database name (libpq's default: the user name)."""
        return self.params.get("dbname") or self.params.get("user") or os.environ.get("USER", "postgres")

    def with_dbname(self, dbname: str) -> ConnectionSettings:
        """The same server and credentials, another database."""
        return dataclasses.replace(self, params={**self.params, "dbname": dbname})

    def conninfo(self) -> str:
        """A libpq connection string without the password (safe for argv)."""
        return pg_conninfo.make_conninfo(**self.params)

    def describe(self) -> str:
        """A short, credential-free description such as ``user@host:5432/db``."""
        host = self.params.get("host", "localhost")
        port = self.params.get("port", "5432")
        user = self.params.get("user", "")
        return f"{user + '@' if user else ''}{host}:{port}/{self.dbname}"

    def subprocess_env(self) -> dict[str, str]:
        """Environment for libpq tools: the caller's environment plus the password (never in argv)."""
        env = {key: value for key, value in os.environ.items() if key not in _ENV_KEYWORDS and key != URI_ENV}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGCONNECT_TIMEOUT", self.params.get("connect_timeout", "15"))
        return env

    def redact(self, text: str) -> str:
        """Text with this connection's password and any URI credentials masked."""
        return redact(text, self.password)

    @contextlib.contextmanager
    def connect(self, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """Open a connection, mapping failures to clear dbops errors."""
        params = dict(self.params)
        params.setdefault("connect_timeout", "15")
        try:
            connection = psycopg.connect(
                pg_conninfo.make_conninfo(**params), password=self.password, autocommit=autocommit
            )
        except psycopg.Error as error:
            raise connection_error(str(error), self) from None
        with connection:
            yield connection


def from_environment(
    *,
    host: str | None = None,
    port: int | str | None = None,
    dbname: str | None = None,
    user: str | None = None,
    sslmode: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConnectionSettings:
    """Settings from ``DBOPS_DATABASE_URI`` and the libpq variables, overridden by explicit values."""
    env = os.environ if environ is None else environ
    params: dict[str, str] = {}
    for variable, keyword in _ENV_KEYWORDS.items():
        if env.get(variable):
            params[keyword] = env[variable]
    uri = env.get(URI_ENV)
    if uri:
        try:
            parsed = pg_conninfo.conninfo_to_dict(uri)
        except psycopg.ProgrammingError as error:
            raise errors.InvalidSpecError(f"{URI_ENV} is not a valid libpq URI: {redact(str(error), uri)}") from None
        params.update({key: str(value) for key, value in parsed.items() if value is not None})
    overrides = {"host": host, "port": port, "dbname": dbname, "user": user, "sslmode": sslmode}
    params.update({key: str(value) for key, value in overrides.items() if value not in (None, "")})
    password = params.pop("password", None)
    return ConnectionSettings(params=params, password=password)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the non-secret connection flags (credentials come from the environment only)."""
    group = parser.add_argument_group(
        "connection", f"from ${URI_ENV} and/or PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE"
    )
    group.add_argument("--host", help="server host (overrides the environment)")
    group.add_argument("--port", type=int, help="server port")
    group.add_argument("--dbname", help="database name")
    group.add_argument("--user", help="role name")
    group.add_argument("--sslmode", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])


def from_args(args: argparse.Namespace) -> ConnectionSettings:
    """Settings from the environment and the flags added by :func:`add_arguments`."""
    return from_environment(host=args.host, port=args.port, dbname=args.dbname, user=args.user, sslmode=args.sslmode)


def connection_error(message: str, settings: ConnectionSettings) -> errors.DbopsError:
    """A clear dbops error for a libpq/psycopg/pg_dump connection failure message."""
    text = settings.redact(message).strip()
    where = settings.describe()
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return errors.AuthenticationError(f"PostgreSQL at {where} rejected the credentials (password authentication failed)")
    if "no pg_hba.conf entry" in lowered or "authentication failed" in lowered:
        return errors.AuthenticationError(f"PostgreSQL at {where} refused the connection: {_first_line(text)}")
    match = re.search(r'database "(.+)" does not exist', text)
    if match:
        return errors.NotFoundError(f'database "{match[1]}" does not exist on {where}')
    invalid = ("invalid integer value", "invalid connection option", "missing \"=\" after", "invalid sslmode value",
               "invalid uri", "invalid percent-encoded token", "unexpected spaces found", "invalid port number")
    if any(marker in lowered for marker in invalid):
        return errors.InvalidSpecError(f"the connection settings for {where} are invalid: {_first_line(text)}")
    if "role" in lowered and "does not exist" in lowered:
        return errors.AuthenticationError(f"PostgreSQL at {where}: {_first_line(text)}")
    if "ssl" in lowered and ("not support" in lowered or "unsupported" in lowered):
        return errors.ConfigurationError(f"cannot connect to {where}: {_first_line(text)}")
    unreachable = ("connection refused", "could not translate host name", "timeout expired", "no route to host",
                   "could not connect", "network is unreachable", "connection timed out", "the database system is")
    if any(marker in lowered for marker in unreachable):
        return errors.TransientError(f"cannot reach PostgreSQL at {where}: {_first_line(text)}")
    return errors.TransientError(f"cannot connect to PostgreSQL at {where}: {_first_line(text)}")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What the runner needs to know about a server and database."""

    version: str
    version_num: int
    database_size_bytes: int

    @property
    def major(self) -> int:
        """The server's major version (e.g. 15)."""
        return self.version_num // 10000


def server_info(connection: psycopg.Connection[Any]) -> ServerInfo:
    """Version and current database size; refuses servers older than PostgreSQL 12."""
    row = connection.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " pg_database_size(current_database())"
    ).fetchone()
    assert row is not None
    info = ServerInfo(version=str(row[0]), version_num=int(row[1]), database_size_bytes=int(row[2]))
    if info.version_num < OLDEST_SUPPORTED_SERVER:
        raise errors.ConfigurationError(
            f"PostgreSQL {info.version} is not supported (dbops needs PostgreSQL 12 or newer)"
        )
    return info
