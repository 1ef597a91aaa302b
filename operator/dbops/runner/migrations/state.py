"""What a migration run needs to know about the database: server version, history, and whether it is empty."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbops import errors
from dbops.runner.migrations import history

Connection = psycopg.Connection[Any]

# Relations in user schemas, excluding objects that belong to extensions and the history table itself.
_USER_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
  AND c.oid IS DISTINCT FROM to_regclass(format('%%I.%%I', %s::text, %s::text))
"""


@dataclass(frozen=True)
class DatabaseState:
    """The facts a plan is built on."""

    server_version: int
    rows: list[history.HistoryRow]
    user_relations: int
    repeatable_rows: list[history.HistoryRow] = field(default_factory=list)
    other_histories: dict[str, str] = field(default_factory=dict)
    """Another tool's history tables found (tool → table), looked for only when ours is empty."""

    @property
    def has_history(self) -> bool:
        """True when any version was ever recorded as applied."""
        return any(row.success for row in self.rows)


def read_state(connection: Connection, table: history.HistoryTable) -> DatabaseState:
    """Read server version, history rows and the number of user relations."""
    rows = table.rows(connection)
    count = connection.execute(_USER_RELATIONS, (table.schema, table.table)).fetchone()
    user_relations = int(count[0]) if count else 0
    others: dict[str, str] = {}
    if user_relations and not any(row.success for row in rows):
        others = {tool: name for tool, name in history.OTHER_TOOLS.items()
                  if history.HistoryTable.parse(name).exists(connection)}
    return DatabaseState(
        server_version=connection.info.server_version,
        rows=rows,
        user_relations=user_relations,
        repeatable_rows=table.repeatable_rows(connection),
        other_histories=others,
    )


def refuse_unadopted(state: DatabaseState, baseline_version: str | None, table: history.HistoryTable) -> None:
    """Refuse a non-empty database without history unless a baseline version adopts it."""
    if state.has_history or state.user_relations == 0 or baseline_version:
        return
    adopt_hint = "give a baseline version (--baseline-version / spec.baselineVersion) to adopt it at that version"
    if state.other_histories:
        tool, their_table = next(iter(state.other_histories.items()))
        adopt_hint = (f"{their_table} exists: import {tool}'s history with `dbops migrate import --from {tool}` "
                      f"(or --import-history / spec.importHistory), or {adopt_hint}")
    raise errors.MigrationError(
        f"the database is not empty ({state.user_relations} relations) but has no migration history in {table}; "
        f"refusing to migrate — {adopt_hint}",
        reason="BaselineRequired",
    )
