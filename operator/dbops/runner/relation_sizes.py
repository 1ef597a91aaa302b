"""Table and index sizes and index usage before and after a migration; the top changes, bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

Connection = psycopg.Connection[Any]
DEFAULT_TOP = 10

_RELATIONS = """
SELECT n.nspname || '.' || c.relname, c.relkind, coalesce(tn.nspname || '.' || t.relname, ''),
       pg_total_relation_size(c.oid), coalesce(st.n_live_tup, 0), coalesce(si.idx_scan, st.idx_scan, 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
LEFT JOIN pg_stat_user_indexes si ON si.indexrelid = c.oid
WHERE c.relkind IN ('r', 'm', 'i')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


@dataclass(frozen=True)
class Relation:
    """One table (or materialized view, or partition) or index as seen at one moment."""

    kind: str
    """``table`` or ``index``."""
    table: str
    """The indexed table (indexes only)."""
    bytes: int
    rows: int
    """Live rows as the statistics estimate them (tables only)."""
    scans: int
    """Index scans so far (pg_stat_user_indexes.idx_scan; for tables, scans through any index)."""


def snapshot(connection: Connection) -> dict[str, Relation]:
    """Every user table and index by ``schema.name``."""
    relations = {}
    for name, relkind, table, size, rows, scans in connection.execute(_RELATIONS).fetchall():
        kind = "index" if relkind == "i" else "table"
        relations[str(name)] = Relation(kind, str(table), int(size), int(rows) if kind == "table" else 0, int(scans))
    return relations


def changes(before: dict[str, Relation] | None, after: dict[str, Relation], top: int = DEFAULT_TOP
            ) -> dict[str, Any]:
    """``{tables: [...], indexes: [...], omitted}``: created and dropped first, then the largest size changes.

    Without ``before`` (a command run measured only afterwards): the largest relations, sizes after only.
    """
    rows: dict[str, list[tuple[tuple[int, int], dict[str, Any]]]] = {"table": [], "index": []}
    for name in sorted(set(after) | set(before or {})):
        old, new = (before or {}).get(name), after.get(name)
        seen = new or old
        assert seen is not None
        kind = seen.kind
        entry: dict[str, Any] = {"name": name}
        if kind == "index":
            entry["table"] = seen.table
        if before is not None:
            entry["bytesBefore"] = old.bytes if old else None
        entry["bytesAfter"] = new.bytes if new else None
        if kind == "index":
            if before is not None:
                entry["scansBefore"] = old.scans if old else None
            entry["scansAfter"] = new.scans if new else None
        else:
            if before is not None:
                entry["rowsBefore"] = old.rows if old else None
            entry["rowsAfter"] = new.rows if new else None
        if before is None:
            rank = (0, -(new.bytes if new else 0))
        else:
            delta = abs((new.bytes if new else 0) - (old.bytes if old else 0))
            created_or_dropped = old is None or new is None
            if not delta and not created_or_dropped:
                continue  # unchanged
            rank = (0 if created_or_dropped else 1, -delta)
        rows[kind].append((rank, entry))
    result: dict[str, Any] = {}
    omitted = 0
    for kind, key in (("table", "tables"), ("index", "indexes")):
        ranked = [entry for _rank, entry in sorted(rows[kind], key=lambda item: item[0])]
        result[key] = ranked[:top]
        omitted += max(0, len(ranked) - top)
    result["omitted"] = omitted
    return result
