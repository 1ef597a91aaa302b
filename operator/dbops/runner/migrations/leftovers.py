"""What a migration's statements left broken: INVALID indexes and NOT VALID constraints meant to validate.

Checked after it runs: a failed or killed ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index that
``IF NOT EXISTS`` would skip for ever; INVALID leftovers are dropped so the next attempt rebuilds them."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbops.runner.migrations import statements as sqlstatements

Connection = psycopg.Connection[Any]
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
# The name is optional (``CREATE INDEX CONCURRENTLY ON t (c)``: PostgreSQL names it); CONCURRENTLY is a keyword
# there, never the index's name.
_CREATE_INDEX = re.compile(
    rf"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_QUALIFIED})\s+)?"
    rf"ON\s+(?:ONLY\s+)?(?P<table>{_QUALIFIED})", re.IGNORECASE,
)
_VALIDATE = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>{_QUALIFIED})\s+.*?"
    rf"\bVALIDATE\s+CONSTRAINT\s+(?P<name>{_IDENT})", re.IGNORECASE | re.DOTALL,
)
_ADD_NOT_VALID = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>{_QUALIFIED})\s+"
    rf"ADD\s+CONSTRAINT\s+(?P<name>{_IDENT})\s.*\bNOT\s+VALID\s*;?\s*$", re.IGNORECASE | re.DOTALL,
)
_PART = re.compile(_IDENT)

# Invalid (or not ready) indexes in user schemas, except partitioned-table indexes (ON ONLY is invalid by design).
_INVALID_INDEXES = """
SELECT i.indexrelid::int8, format('%I.%I', n.nspname, c.relname)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (NOT i.indisvalid OR NOT i.indisready) AND c.relkind = 'i'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
"""
# The index a statement names: qualified, or in the schema of its table.
_NAMED_INDEX = """
SELECT c.oid::int8, format('%%I.%%I', n.nspname, c.relname), i.indisvalid AND i.indisready
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relname = %(name)s AND c.relkind = 'i'
  AND n.oid = coalesce((SELECT oid FROM pg_namespace WHERE nspname = %(schema)s),
                       (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(%(table)s)))
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid)
"""
# The table's indexes (to find the one an unnamed CREATE INDEX built).
_TABLE_INDEXES = "SELECT indexrelid::int8 FROM pg_index WHERE indrelid = to_regclass(%(table)s)"
# INVALID indexes of the same table defined exactly like a valid one just built: an earlier attempt's build.
_INVALID_TWINS = """
SELECT o.indexrelid::int8, format('%%I.%%I', n.nspname, c.relname)
FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
JOIN pg_index o ON o.indrelid = x.indrelid AND o.indexrelid <> x.indexrelid
JOIN pg_class c ON c.oid = o.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE x.indexrelid = ANY(%(built)s) AND x.indisvalid AND NOT (o.indisvalid AND o.indisready)
  AND c.relam = xc.relam AND o.indisunique = x.indisunique AND o.indnkeyatts = x.indnkeyatts
  AND o.indkey::text = x.indkey::text AND o.indclass::text = x.indclass::text
  AND o.indcollation::text = x.indcollation::text AND o.indoption::text = x.indoption::text
  AND pg_get_expr(o.indexprs, o.indrelid) IS NOT DISTINCT FROM pg_get_expr(x.indexprs, x.indrelid)
  AND pg_get_expr(o.indpred, o.indrelid) IS NOT DISTINCT FROM pg_get_expr(x.indpred, x.indrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = o.indexrelid)
"""
_NOT_VALID_CONSTRAINT = """
SELECT format('%%s.%%I', con.conrelid::regclass, con.conname) FROM pg_constraint con
WHERE con.conrelid = to_regclass(%(table)s) AND con.conname = %(name)s AND NOT con.convalidated
"""

# The same, as (table as regclass text, constraint name) for a DROP.
_NOT_VALID_NAMED = """
SELECT con.conrelid::regclass::text, con.conname FROM pg_constraint con
WHERE con.conrelid = to_regclass(%(table)s) AND con.conname = %(name)s AND NOT con.convalidated
"""


@dataclass(frozen=True)
class IndexRef:
    """An index a statement creates by name: ``schema`` is None when unqualified (then it is the table's)."""

    name: str
    schema: str | None
    table: str


@dataclass(frozen=True)
class ConstraintRef:
    """A constraint a statement validates."""

    name: str
    table: str


def index_created_by(statement: sqlstatements.Statement) -> IndexRef | None:
    """The named index a ``CREATE INDEX`` statement creates, or None (also for an unnamed one)."""
    match = _CREATE_INDEX.match(sqlstatements.strip_comments(statement.text))
    if not match or match["name"] is None:
        return None
    parts = [_unquote(p) for p in _PART.findall(match["name"])]
    schema, name = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return IndexRef(name=name, schema=schema, table=match["table"])


def unnamed_index_table(statement: sqlstatements.Statement) -> str | None:
    """The table of an unnamed ``CREATE INDEX … ON table`` (PostgreSQL picks the name), or None."""
    match = _CREATE_INDEX.match(sqlstatements.strip_comments(statement.text))
    return match["table"] if match and match["name"] is None else None


def table_indexes(connection: Connection, table: str) -> set[int]:
    """The oids of a table's indexes (none when it does not exist)."""
    return {int(row[0]) for row in connection.execute(_TABLE_INDEXES, {"table": table}).fetchall()}


def invalid_twins(connection: Connection, table: str, before: set[int]) -> list[str]:
    """INVALID indexes of ``table`` defined exactly like an index built since ``before`` was read.

    An unnamed ``CREATE INDEX CONCURRENTLY`` that hit the lock timeout (or whose runner was killed) left one
    under a name PostgreSQL chose; the retry builds another under the next name. The leftover cannot be found
    by name, so it is found by definition once its twin is built.
    """
    built = sorted(table_indexes(connection, table) - before)
    if not built:
        return []
    return [str(row[1]) for row in connection.execute(_INVALID_TWINS, {"built": built}).fetchall()]


def constraint_validated_by(statement: sqlstatements.Statement) -> ConstraintRef | None:
    """The constraint an ``ALTER TABLE … VALIDATE CONSTRAINT`` statement validates, or None."""
    match = _VALIDATE.match(sqlstatements.strip_comments(statement.text))
    return ConstraintRef(_unquote(match["name"]), match["table"]) if match else None


def constraint_added_not_valid_by(statement: sqlstatements.Statement) -> ConstraintRef | None:
    """The constraint an ``ALTER TABLE … ADD CONSTRAINT name … NOT VALID`` statement adds, or None."""
    match = _ADD_NOT_VALID.match(sqlstatements.strip_comments(statement.text))
    return ConstraintRef(_unquote(match["name"]), match["table"]) if match else None


def drop_not_valid_constraint(connection: Connection, ref: ConstraintRef) -> str | None:
    """Drop the constraint when it exists and is NOT VALID (left by an earlier failed attempt); its name or None.

    The statement re-adds it right after: without this, a re-run of a no-transaction migration whose VALIDATE
    failed would stop at ``already exists`` for ever.
    """
    row = connection.execute(_NOT_VALID_NAMED, {"table": ref.table, "name": ref.name}).fetchone()
    if row is None:
        return None
    connection.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(row[0]), sql.Identifier(row[1])))
    return f"{row[0]}.{row[1]}"


def invalid_indexes(connection: Connection) -> dict[int, str]:
    """Every INVALID index in user schemas that no one is building right now: oid → qualified name."""
    return {int(oid): str(name) for oid, name in connection.execute(_INVALID_INDEXES).fetchall()}


def invalid_named_index(connection: Connection, ref: IndexRef) -> tuple[int, str] | None:
    """(oid, name) when the index the statement names exists and is INVALID (and not being built)."""
    row = connection.execute(_NAMED_INDEX, {"name": ref.name, "schema": ref.schema, "table": ref.table}).fetchone()
    if row is None or row[2]:
        return None
    return int(row[0]), str(row[1])


def drop_statement(qualified_name: str, *, concurrently: bool) -> sql.Composed:
    """``DROP INDEX [CONCURRENTLY] IF EXISTS schema.name``."""
    schema, name = _split_formatted(qualified_name)
    return sql.SQL("DROP INDEX {}IF EXISTS {}").format(
        sql.SQL("CONCURRENTLY " if concurrently else ""), sql.Identifier(schema, name)
    )


def drop_invalid(connection: Connection, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Drop INVALID indexes concurrently (autocommit); returns (dropped, {name: why not})."""
    dropped, kept = [], {}
    for name in names:
        try:
            connection.execute(drop_statement(name, concurrently=True))
            dropped.append(name)
        except psycopg.Error as error:
            kept[name] = error.diag.message_primary or str(error).strip()
    return dropped, kept


def problems_after(connection: Connection, script_statements: tuple[sqlstatements.Statement, ...],
                   invalid_before: dict[int, str]) -> tuple[list[str], list[str]]:
    """After a no-transaction migration: (INVALID indexes it created or named, constraints it left NOT VALID)."""
    now = invalid_indexes(connection)
    broken = {oid: name for oid, name in now.items() if oid not in invalid_before}
    not_valid = []
    for statement in script_statements:
        index = index_created_by(statement)
        if index is not None:
            found = invalid_named_index(connection, index)
            if found is not None:
                broken[found[0]] = found[1]
        constraint = constraint_validated_by(statement)
        if constraint is not None:
            with contextlib.suppress(psycopg.Error):  # the table was dropped later in the migration
                row = connection.execute(_NOT_VALID_CONSTRAINT,
                                         {"table": constraint.table, "name": constraint.name}).fetchone()
                if row:
                    not_valid.append(str(row[0]))
    return sorted(broken.values()), not_valid


def describe(dropped: list[str], kept: dict[str, str], not_valid: list[str]) -> str:
    """What is broken and what was done about it, for an error message."""
    parts = []
    if dropped:
        parts.append(f"INVALID index {', '.join(dropped)} dropped, so the next run rebuilds it")
    if kept:
        parts.append("INVALID index " + ", ".join(f"{name} left in place ({why})" for name, why in kept.items())
                     + "; the next run drops and rebuilds it")
    if not_valid:
        parts.append(f"constraint {', '.join(not_valid)} is still NOT VALID")
    return "; ".join(parts)


def _unquote(part: str) -> str:
    part = part.strip()
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()


def _split_formatted(qualified_name: str) -> tuple[str, str]:
    """Split ``format('%I.%I')`` output back into its two parts."""
    parts = [_unquote(p) if p.startswith('"') else p for p in _PART.findall(qualified_name)]
    return parts[0], parts[1]
