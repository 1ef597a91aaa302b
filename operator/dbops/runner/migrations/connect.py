"""Database sessions for migrate, check and verify, and stray PostgreSQL errors mapped to dbops errors.

Built on ``dbops.runner.connection``.

Credentials come only from the environment (``DBOPS_DATABASE_URI`` and/or ``PG*``); the flags
``--host --port --dbname --user --sslmode`` override the rest; there is no password flag.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import psycopg

from dbops import errors
from dbops.redaction import redact
from dbops.runner import connection as pgconnection

APPLICATION_NAME = "dbops"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the shared, non-secret connection flags."""
    pgconnection.add_arguments(parser)


@contextlib.contextmanager
def session(args: argparse.Namespace, *, application_name: str = APPLICATION_NAME) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection from the environment and flags, named ``application_name`` unless
    ``PGAPPNAME``/the URI names it; connection failures become dbops errors."""
    settings = pgconnection.from_args(args)
    settings = dataclasses.replace(settings, params={"application_name": application_name, **settings.params})
    with settings.connect(autocommit=True) as connection:
        yield connection


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
