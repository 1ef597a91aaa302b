"""What a backup covers: pg_dump's scope options, the tables a scope selects, and their exact row counts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.runner.manifest import BackupScope


def scope_arguments(scope: BackupScope) -> list[str]:
    """pg_dump options for a scope."""
    if scope.schema_only and scope.data_only:
        raise errors.InvalidSpecError("schema-only and data-only cannot both be set")
    args = ["--schema-only"] if scope.schema_only else ["--data-only"] if scope.data_only else []
    for flag, values in (
        ("--schema", scope.schemas), ("--exclude-schema", scope.exclude_schemas), ("--table", scope.tables),
        ("--exclude-table", scope.exclude_tables), ("--exclude-table-data", scope.exclude_table_data),
    ):
        args += [f"{flag}={value}" for value in values]
    return args


def _pattern_regex(pattern: str) -> tuple[re.Pattern[str] | None, re.Pattern[str]]:
    """A psql-style pattern as (schema regex or None, name regex)."""
    def convert(part: str) -> re.Pattern[str]:
        out = ""
        quoted = False
        for char in part:
            if char == '"':
                quoted = not quoted
            elif char == "*" and not quoted:
                out += ".*"
            elif char == "?" and not quoted:
                out += "."
            else:
                out += re.escape(char if quoted else char.lower())
        return re.compile(f"^{out}$")

    parts = re.split(r'\.(?=(?:[^"]*"[^"]*")*[^"]*$)', pattern)
    if len(parts) >= 2:
        return convert(parts[-2]), convert(parts[-1])
    return None, convert(parts[0])


def _matches(patterns: Iterable[str], schema: str, name: str, *, schema_pattern: bool = False) -> bool:
    for pattern in patterns:
        if schema_pattern:
            if _pattern_regex(pattern)[1].match(schema):
                return True
            continue
        schema_re, name_re = _pattern_regex(pattern)
        if name_re.match(name) and (schema_re is None or schema_re.match(schema)):
            return True
    return False


def tables_in_scope(all_tables: Iterable[tuple[str, str]], scope: BackupScope) -> list[tuple[str, str, bool]]:
    """(schema, table, data dumped) for the tables a pg_dump with this scope includes (approximating patterns)."""
    selected = []
    for schema, name in all_tables:
        if scope.schemas and not _matches(scope.schemas, schema, name, schema_pattern=True):
            continue
        if _matches(scope.exclude_schemas, schema, name, schema_pattern=True):
            continue
        if scope.tables and not _matches(scope.tables, schema, name):
            continue
        if _matches(scope.exclude_tables, schema, name):
            continue
        with_data = not scope.schema_only and not _matches(scope.exclude_table_data, schema, name)
        selected.append((schema, name, with_data))
    return selected


USER_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


def user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Ordinary tables (and partitions) outside system schemas and extensions."""
    return [(str(s), str(t)) for s, t in conn.execute(USER_TABLES_SQL).fetchall()]


def count_rows(conn: psycopg.Connection[Any], tables: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Exact row counts by ``schema.name``."""
    counts = {}
    for schema, name in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return counts
