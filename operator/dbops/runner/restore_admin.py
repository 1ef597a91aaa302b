"""Database administration for restores: existence, create, drop, re-create, sessions, emptiness."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.runner import connection, dbproperties
from dbops.runner.manifest import DatabaseProperties


def database_exists(settings: connection.ConnectionSettings) -> bool:
    """Whether the settings' database exists (connecting to it)."""
    try:
        with settings.connect():
            return True
    except errors.NotFoundError:
        return False


@contextlib.contextmanager
def maintenance_connection(
    settings: connection.ConnectionSettings, dbname: str = "postgres"
) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the server's maintenance database (``postgres``, else ``template1``)."""
    with contextlib.ExitStack() as stack:
        try:
            conn = stack.enter_context(settings.with_dbname(dbname).connect())
        except errors.NotFoundError:
            if dbname != "postgres":
                raise
            conn = stack.enter_context(settings.with_dbname("template1").connect())
        yield conn


def create_database(settings: connection.ConnectionSettings, maintenance_dbname: str = "postgres") -> None:
    """``CREATE DATABASE`` from template0."""
    with maintenance_connection(settings, maintenance_dbname) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(settings.dbname)))


def drop_database(settings: connection.ConnectionSettings) -> None:
    """Drop the database, disconnecting its sessions."""
    with maintenance_connection(settings) as conn:
        terminate_connections(conn, settings.dbname)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(settings.dbname)))


_DATABASE_PROPERTIES = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       pg_has_role(current_user, d.datdba, 'MEMBER'),
       (SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user)
FROM pg_database d WHERE d.datname = %s
"""


def recreate_database(settings: connection.ConnectionSettings, maintenance_dbname: str = "postgres",
                      recorded: DatabaseProperties | None = None) -> list[str]:
    """Drop the database (terminating its sessions) and create it empty with its owner, encoding and locale, then
    give it back its privileges, settings and comment: those ``recorded`` in the backup, else its own.

    Privileges are checked first, so a role that could drop but not create never leaves the database gone.
    Returns the properties that could not be applied (their role no longer exists).
    """
    dbname = settings.dbname
    with maintenance_connection(settings, maintenance_dbname) as conn:
        properties = recorded or dbproperties.read(conn, dbname)
        row = conn.execute(_DATABASE_PROPERTIES, (dbname,)).fetchone()
        if row is None:
            raise errors.NotFoundError(f'database "{dbname}" does not exist on {settings.describe()}')
        owner, encoding, collate, ctype, owner_member, can_create = row
        if not (owner_member and can_create):
            raise errors.AuthenticationError(
                f're-creating database "{dbname}" needs CREATEDB and membership in its owner role "{owner}"',
                reason="InsufficientPrivileges",
            )
        create = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(dbname), sql.Identifier(owner), sql.Literal(encoding), sql.Literal(collate),
            sql.Literal(ctype),
        )
        major = conn.info.server_version // 10000
        if major >= 15:
            locale_column = "datlocale" if major >= 17 else "daticulocale"
            provider_row = conn.execute(
                sql.SQL("SELECT datlocprovider, {} FROM pg_database WHERE datname = %s").format(
                    sql.Identifier(locale_column)), (dbname,),
            ).fetchone()
            if provider_row is not None and provider_row[0] in ("i", "b"):
                provider = "icu" if provider_row[0] == "i" else "builtin"
                locale_option = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
                create += sql.SQL(" LOCALE_PROVIDER {} {} {}").format(
                    sql.SQL(provider), sql.SQL(locale_option), sql.Literal(provider_row[1]))
        if major >= 13:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        else:
            terminate_connections(conn, dbname)
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(dbname)))
        conn.execute(create)
        return dbproperties.apply(conn, dbname, owner, properties)


def terminate_connections(conn: psycopg.Connection[Any], dbname: str) -> int:
    """Terminate other sessions on a database; returns how many."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchall()
    return len(rows)


def user_object_count(conn: psycopg.Connection[Any]) -> int:
    """Relations, functions and types in non-system schemas (0 for a fresh database)."""
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
             + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
             + (SELECT count(*) FROM pg_namespace n
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
                  AND n.nspname NOT LIKE 'pg\\_%')
        """
    ).fetchone()
    return int(row[0]) if row else 0


def tables_with_rows(conn: psycopg.Connection[Any], limit: int = 5) -> list[str]:
    """Up to ``limit`` user tables that hold at least one row."""
    tables = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2
        """
    ).fetchall()
    filled = []
    for schema, name in tables:
        if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, name))).fetchone() \
                == (True,):
            filled.append(f"{schema}.{name}")
            if len(filled) >= limit:
                break
    return filled
