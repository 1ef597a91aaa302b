"""The migration history table (default ``public.dbops_migrations``): what ran, when, by whom, with which checksum."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.api import versions

DEFAULT_TABLE = "public.dbops_migrations"
# Other tools' history tables ``migrate import`` reads (``adopt``), by tool, at their default names.
OTHER_TOOLS = {"golang-migrate": "public.schema_migrations", "flyway": "public.flyway_schema_history",
               "goose": "public.goose_db_version"}
APPLIED_BY_VARIABLE = "DBOPS_APPLIED_BY"  # e.g. set by the operator to namespace/DatabaseMigration name
_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_QUALIFIED = re.compile(rf"^(?:(?P<schema>{_PART})\.)?(?P<table>{_PART})$")

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class HistoryRow:
    """One row of the history table."""

    version: str
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: int
    applied_by: str
    success: bool
    kind: str

    @property
    def number(self) -> versions.Key:
        """The version's parts as integers (the sort key)."""
        return versions.key(self.version)


@dataclass(frozen=True)
class HistoryTable:
    """A schema-qualified history table name."""

    schema: str
    table: str

    @classmethod
    def parse(cls, qualified: str) -> HistoryTable:
        """Parse ``schema.table`` (``public`` when unqualified); quoted parts keep their case."""
        match = _QUALIFIED.match(qualified.strip())
        if not match:
            raise errors.InvalidSpecError(f"history table {qualified!r} is not a valid [schema.]table name")
        return cls(_unquote(match["schema"] or "public"), _unquote(match["table"]))

    @property
    def identifier(self) -> sql.Composable:
        """The quoted, qualified identifier for SQL composition."""
        return sql.Identifier(self.schema, self.table)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"

    def exists(self, connection: Connection) -> bool:
        """True when the table exists."""
        row = connection.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (self.schema, self.table)
        ).fetchone()
        return bool(row and row[0])

    def ensure(self, connection: Connection) -> None:
        """Create the schema and table when missing (idempotent)."""
        if self.exists(connection):
            return
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        connection.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " version text PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(),"
                " duration_ms bigint NOT NULL DEFAULT 0,"
                " applied_by text NOT NULL DEFAULT current_user,"
                " success boolean NOT NULL,"
                " kind text NOT NULL DEFAULT 'migration'"
                ")"
            ).format(self.identifier)
        )

    def rows(self, connection: Connection) -> list[HistoryRow]:
        """Every row of a versioned migration, by version (empty when the table does not exist)."""
        rows = self._select(connection, repeatable=False)
        return sorted(rows, key=lambda row: row.number)

    def repeatable_rows(self, connection: Connection) -> list[HistoryRow]:
        """The rows of repeatable migrations (kind ``repeatable``, version ``R__<name>``), by name."""
        return sorted(self._select(connection, repeatable=True), key=lambda row: row.name)

    def _select(self, connection: Connection, *, repeatable: bool) -> list[HistoryRow]:
        if not self.exists(connection):
            return []
        cursor = connection.execute(
            sql.SQL(
                "SELECT version, name, checksum, applied_at, duration_ms, applied_by, success, kind FROM {}"
                " WHERE (kind = 'repeatable') = %s"
            ).format(self.identifier), (repeatable,)
        )
        return [HistoryRow(*row) for row in cursor.fetchall()]

    def repair_notes(self, connection: Connection) -> dict[str, str]:
        """version → the reasons ``migrate repair`` recorded (column ``repair_note``, added by the first repair)."""
        row = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(format('%%I.%%I', %s::text,"
            " %s::text)) AND attname = 'repair_note' AND NOT attisdropped)", (self.schema, self.table)).fetchone()
        if not (row and row[0]):
            return {}
        cursor = connection.execute(sql.SQL("SELECT version, repair_note FROM {} WHERE repair_note IS NOT NULL")
                                    .format(self.identifier))
        return {str(version): str(note) for version, note in cursor.fetchall()}

    def record(
        self,
        connection: Connection,
        *,
        version: str,
        name: str,
        checksum: str,
        duration_ms: int | None,
        success: bool,
        kind: str = "migration",
    ) -> psycopg.Cursor[Any]:
        """Insert or replace the row of one version; the cursor returns the row's ``duration_ms``.

        ``duration_ms`` None means "since the transaction began"; ``applied_by`` is ``$DBOPS_APPLIED_BY``
        or the database user.
        """
        return connection.execute(
            _record_query(self),
            (version, name, checksum, duration_ms, success, kind, os.environ.get(APPLIED_BY_VARIABLE) or None),
        )

    def forget(self, connection: Connection, version: str) -> None:
        """Delete the row of one version (after its down migration)."""
        connection.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(self.identifier), (version,))


@functools.cache
def _record_query(table: HistoryTable) -> sql.Composed:
    """The upsert of a history row (composed once per table: a run records one row per migration)."""
    return sql.SQL(
        "INSERT INTO {} (version, name, checksum, duration_ms, success, kind, applied_by)"
        " VALUES (%s, %s, %s,"
        " coalesce(%s, (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint),"
        " %s, %s, coalesce(%s, current_user))"
        " ON CONFLICT (version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum,"
        " applied_at = now(), duration_ms = excluded.duration_ms, success = excluded.success,"
        " kind = excluded.kind, applied_by = excluded.applied_by"
        " RETURNING duration_ms"
    ).format(table.identifier)


def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()
