"""Database-level properties a re-created database must get back: privileges, ALTER DATABASE settings, comment."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.runner.manifest import DatabaseGrant, DatabaseProperties, DatabaseSetting

# Settings whose value is a list (pg_dump quotes each element: GUC_LIST_QUOTE).
_LIST_SETTINGS = {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries",
                  "shared_preload_libraries", "unix_socket_directories"}


_PRIVILEGES = {"CREATE", "CONNECT", "TEMPORARY"}


def read(conn: psycopg.Connection[Any], dbname: str | None = None) -> DatabaseProperties:
    """The properties of a database (the connection's own by default), read from the catalog."""
    row = conn.execute(
        "SELECT d.oid, d.datacl IS NULL, shobj_description(d.oid, 'pg_database') FROM pg_database d "
        "WHERE d.datname = coalesce(%s, current_database())", (dbname,),
    ).fetchone()
    if row is None:
        raise errors.NotFoundError(f'database "{dbname}" does not exist')
    oid, default_acl, comment = row
    grants = [DatabaseGrant(grantee=str(grantee), privilege=str(privilege), grantable=bool(grantable))
              for grantee, privilege, grantable in conn.execute(
                  "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,"
                  " a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s ORDER BY 1, 2",
                  (oid,)).fetchall()]
    settings = [DatabaseSetting(role=str(role) if role else None, config=[str(item) for item in config])
                for role, config in conn.execute(
                    "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, s.setconfig "
                    "FROM pg_db_role_setting s WHERE s.setdatabase = %s ORDER BY 1 NULLS FIRST", (oid,)).fetchall()]
    return DatabaseProperties(default_acl=bool(default_acl), grants=grants, settings=settings, comment=comment)


def _split_list(value: str) -> list[str]:
    """Elements of a list setting as stored (``"$user", public``), unquoted."""
    items = re.findall(r'\s*("(?:[^"]|"")*"|[^,]+?)\s*(?:,|$)', value)
    return [item[1:-1].replace('""', '"') if item.startswith('"') else item for item in items if item]


def _setting_value(name: str, value: str) -> sql.Composable:
    if name.lower() in _LIST_SETTINGS:
        return sql.SQL(", ").join(sql.Literal(item) for item in _split_list(value))
    return sql.Literal(value)


def statements(dbname: str, owner: str, properties: DatabaseProperties) -> list[sql.Composed]:
    """The statements that give a freshly created database these properties."""
    unknown = [g.privilege for g in properties.grants if g.privilege not in _PRIVILEGES]
    if unknown:
        raise errors.VerificationError(f"unknown database privileges in the recorded properties: {unknown}")
    database = sql.Identifier(dbname)
    result: list[sql.Composed] = []
    if not properties.default_acl:
        result += [sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database),
                   sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(database, sql.Identifier(owner))]
        for grant in properties.grants:
            grantee = sql.SQL("PUBLIC") if grant.grantee == "PUBLIC" else sql.Identifier(grant.grantee)
            result.append(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(grant.privilege), database, grantee,
                sql.SQL(" WITH GRANT OPTION" if grant.grantable else "")))
    for setting in properties.settings:
        target = (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(setting.role), database)
                  if setting.role else sql.SQL("ALTER DATABASE {}").format(database))
        for item in setting.config:
            name, _, value = item.partition("=")
            result.append(sql.SQL("{} SET {} = {}").format(target, sql.Identifier(name), _setting_value(name, value)))
    if properties.comment is not None:
        result.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(database, sql.Literal(properties.comment)))
    return result


def apply(conn: psycopg.Connection[Any], dbname: str, owner: str, properties: DatabaseProperties) -> list[str]:
    """Give a re-created database its properties back (on a connection to another database).

    A property naming a role that no longer exists is skipped and reported, never left half-restored silently.
    """
    skipped = []
    for statement in statements(dbname, owner, properties):
        try:
            with conn.transaction():
                conn.execute(statement)
        except (psycopg.errors.UndefinedObject, psycopg.errors.InvalidParameterValue) as error:
            skipped.append(f"{statement.as_string(conn)}: {str(error).strip()}")
    return skipped
