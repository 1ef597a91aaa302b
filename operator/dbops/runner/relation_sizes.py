"""Table and index sizes and index usage before and after a migration; the top changes, bounded."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

Connection = psycopg.Connection[Any]
DEFAULT_TOP = 10
MAX_KEPT = 20000
"""A snapshot kept for later (command mode) holds at most this many relations, the largest first."""

# Each relation's own size once (pg_table_size: every fork, and a table's TOAST), and the statistics functions
# the pg_stat_user_* views are built on: pg_total_relation_size(table) measured every index twice and the
# views group over all tables, which made the snapshot after 200 new tables cost ~60 ms of server time (P6).
# A table's total and its index scans are summed from its indexes' rows in ``snapshot``.
_RELATIONS = """
SELECT n.nspname || '.' || c.relname, c.relkind, coalesce(tn.nspname || '.' || t.relname, ''), pg_table_size(c.oid),
       CASE c.relkind WHEN 'i' THEN 0 ELSE coalesce(pg_stat_get_live_tuples(c.oid), 0) END,
       CASE c.relkind WHEN 'i' THEN coalesce(pg_stat_get_numscans(c.oid), 0) ELSE 0 END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
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


def snapshot(connection: Connection, helper: Connection | None = None) -> dict[str, Relation]:
    """Every user table and index by ``schema.name``; a table's bytes include its indexes and TOAST (as
    ``pg_total_relation_size``), its scans are those of its indexes (as ``pg_stat_user_tables.idx_scan``).

    With ``helper`` (another session on the same database, see ``second_session``) each session measures half
    of the relations at the same time: a session opens every relation it measures, and after a run that created
    or altered many of them (their cached descriptions dropped at each commit) that is most of the cost (P6)."""
    rows = connection.execute(_RELATIONS).fetchall() if helper is None else _in_halves(connection, helper)
    index_bytes: dict[str, int] = {}
    index_scans: dict[str, int] = {}
    for _name, relkind, table, size, _rows, scans in rows:
        if relkind == "i":
            index_bytes[table] = index_bytes.get(table, 0) + int(size)
            index_scans[table] = index_scans.get(table, 0) + int(scans)
    relations = {}
    for name, relkind, table, size, live, scans in rows:
        if relkind == "i":
            relations[str(name)] = Relation("index", str(table), int(size), 0, int(scans))
        else:
            relations[str(name)] = Relation("table", "", int(size) + index_bytes.get(name, 0), int(live),
                                            index_scans.get(name, 0))
    return relations


@contextlib.contextmanager
def second_session(connection: Connection) -> Iterator[Connection | None]:
    """A second autocommit session like ``connection`` (same server, database, role and options; the password
    libpq used) for ``snapshot``, closed afterwards; None when the server refuses it (e.g. at its connection
    limit): the snapshot then measures everything on ``connection``."""
    try:
        helper = psycopg.Connection.connect(connection.info.dsn, password=connection.info.password or None,
                                            autocommit=True)
    except psycopg.Error:
        yield None
        return
    with helper:
        yield helper


def _in_halves(connection: Connection, helper: Connection) -> list[tuple[Any, ...]]:
    """``_RELATIONS`` split by OID parity between the two sessions, run at the same time (a thread waits on the
    helper; psycopg releases the GIL while it waits). A helper that fails leaves its half to ``connection``."""
    halves: dict[int, list[tuple[Any, ...]]] = {}

    def measure_on_helper() -> None:
        with contextlib.suppress(psycopg.Error):
            halves[1] = helper.execute(_RELATIONS + " AND c.oid::int8 % 2 = 1").fetchall()

    thread = threading.Thread(target=measure_on_helper, name="dbops-relation-sizes", daemon=True)
    thread.start()
    try:
        halves[0] = connection.execute(_RELATIONS + " AND c.oid::int8 % 2 = 0").fetchall()
    finally:
        thread.join()
    if 1 not in halves:
        halves[1] = connection.execute(_RELATIONS + " AND c.oid::int8 % 2 = 1").fetchall()
    return halves[0] + halves[1]


def to_wire(relations: dict[str, Relation], limit: int = MAX_KEPT) -> dict[str, Any]:
    """``{relations: {name: [t|i, table, bytes, rows, scans]}, omitted}``: the ``limit`` largest, compactly."""
    kept = sorted(relations.items(), key=lambda item: (-item[1].bytes, item[0]))[:limit]
    return {"relations": {name: [r.kind[0], r.table, r.bytes, r.rows, r.scans] for name, r in kept},
            "omitted": max(0, len(relations) - limit)}


def from_wire(document: dict[str, Any]) -> tuple[dict[str, Relation], int]:
    """``to_wire``'s form back: (relations, how many were left out)."""
    relations = {str(name): Relation("index" if kind == "i" else "table", str(table), int(size), int(rows),
                                     int(scans))
                 for name, (kind, table, size, rows, scans) in dict(document.get("relations") or {}).items()}
    return relations, int(document.get("omitted") or 0)


def changes(before: dict[str, Relation] | None, after: dict[str, Relation], top: int = DEFAULT_TOP,
            before_omitted: int = 0) -> dict[str, Any]:
    """``{tables: [...], indexes: [...], omitted}``: created and dropped first, then the largest size changes.

    Without ``before`` (a command run measured only afterwards): the largest relations, sizes after only.
    When ``before`` left relations out (``before_omitted``), a relation missing from it may have existed, so
    none is reported as created, and ``note`` says so.
    """
    rows: dict[str, list[tuple[tuple[int, int], dict[str, Any]]]] = {"table": [], "index": []}
    for name in sorted(set(after) | set(before or {})):
        old, new = (before or {}).get(name), after.get(name)
        if before_omitted and old is None:
            continue
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
    if before_omitted:
        result["note"] = (f"the snapshot before the command kept the {len(before or {})} largest relations "
                          f"({before_omitted} more left out): relations created by the command are not shown")
    return result


def fit(sizes: dict[str, Any], room: int) -> dict[str, Any]:
    """``sizes`` in at most ``room`` bytes of compact JSON: the last entries of the longer list go first, counted
    in ``omitted``, and ``note`` says why (the runner's result is 4 KiB; the Job's log has every entry)."""
    fitted = {**sizes, "tables": list(sizes.get("tables") or []), "indexes": list(sizes.get("indexes") or [])}
    cut = 0
    while len(json.dumps(fitted, separators=(",", ":"), default=str).encode()) > room \
            and (fitted["tables"] or fitted["indexes"]):
        longer = "tables" if len(fitted["tables"]) >= len(fitted["indexes"]) else "indexes"
        fitted[longer].pop()
        cut += 1
        fitted["omitted"] = int(sizes.get("omitted") or 0) + cut
        fitted["note"] = "; ".join(part for part in (
            str(sizes.get("note") or ""), f"{cut} more not shown to keep the result within 4 KiB (the Job's log "
            "has every entry)") if part)
    return fitted
