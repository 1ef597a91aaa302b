"""Row counts of user tables before and after a migration: exact below a size guard, estimated above, bounded.

Partitioned tables are counted once (their partitions are not listed on their own). A table larger than the
guard is not scanned: its count is the statistics' live-row estimate, ``pg_stat_user_tables.n_live_tup``, which
each committed INSERT/DELETE moves at once (``pg_class.reltuples`` moves only with ANALYZE/VACUUM, so a command's
DELETE would not show; it stands in only where the statistics have seen nothing, e.g. after a reset). The
comparison names the estimated tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[Any]
DEFAULT_EXACT_MAX_MB = 256.0
"""Tables up to this size get an exact ``count(*)``; larger ones an estimate (the orphan scan's guard, too)."""
MAX_TABLES = 2000
"""At most this many tables are counted (by name); the rest are named as not counted, never dropped silently."""
MAX_SHOWN = 10

# Sizes and estimates add up a partitioned table's leaves; a plain table is its own leaf (pg_partition_tree
# lists it alone, or nothing, depending on the version: UNION keeps it once).
_TABLES = """
SELECT n.nspname, c.relname, coalesce(sum(pg_total_relation_size(l.oid)), 0),
       coalesce(sum(CASE WHEN s.n_live_tup > 0 OR s.n_tup_ins + s.n_tup_upd + s.n_tup_del > 0 THEN s.n_live_tup
                         ELSE greatest(l.reltuples, 0) END), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (SELECT p.oid, p.reltuples FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid
                   WHERE t.isleaf UNION SELECT c.oid, c.reltuples WHERE c.relkind = 'r') l ON true
LEFT JOIN pg_stat_user_tables s ON s.relid = l.oid
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
GROUP BY 1, 2 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class RowCounts:
    """Row counts by ``schema.table``; those in ``estimated`` are estimates, ``omitted`` tables were not counted."""

    counts: dict[str, int]
    estimated: frozenset[str] = field(default_factory=frozenset)
    omitted: int = 0
    """Tables beyond MAX_TABLES, not counted."""
    exact_max_bytes: int | None = None
    """The size guard the counts were taken with (None: every table counted exactly)."""

    def to_wire(self) -> dict[str, Any]:
        """The compact JSON form kept in the command-mode snapshot."""
        return {"counts": self.counts, "estimated": sorted(self.estimated), "omitted": self.omitted,
                "exactMaxBytes": self.exact_max_bytes}

    @classmethod
    def from_wire(cls, document: Mapping[str, Any]) -> RowCounts:
        """Read ``to_wire``'s form (a plain ``{table: count}`` too)."""
        if "counts" not in document:
            return cls({str(k): int(v) for k, v in document.items()})
        guard = document.get("exactMaxBytes")
        return cls({str(k): int(v) for k, v in dict(document["counts"]).items()},
                   frozenset(str(t) for t in document.get("estimated") or ()), int(document.get("omitted") or 0),
                   int(guard) if guard is not None else None)


def parse_tables(text: str) -> frozenset[str]:
    """``a, app.b`` → {public.a, app.b}."""
    names = (name.strip() for name in text.split(",") if name.strip())
    return frozenset(name if "." in name else f"public.{name}" for name in names)


def exact_max_bytes(megabytes: float) -> int | None:
    """The size guard in bytes for a MiB flag (0 or less: none, every table counted exactly)."""
    return int(megabytes * 1048576) if megabytes > 0 else None


def count(connection: Connection, exclude: Iterable[str] = (), *, only: frozenset[str] = frozenset(),
          exact_max_bytes: int | None = None, estimate: frozenset[str] = frozenset(),
          exact: frozenset[str] = frozenset(), limit: int | None = None) -> RowCounts:
    """Count the user tables not in ``exclude`` (only those in ``only`` when given).

    ``exact``/``estimate`` force the method per table (the after side repeats the before side's), the others
    are counted exactly up to ``exact_max_bytes`` (None: always). Beyond ``limit`` tables none are counted.
    """
    excluded = set(exclude)
    tables = [(f"{schema}.{name}", schema, name, int(size), int(rows))
              for schema, name, size, rows in connection.execute(_TABLES).fetchall()
              if f"{schema}.{name}" not in excluded and (not only or f"{schema}.{name}" in only)]
    omitted = 0
    if limit is not None and len(tables) > limit:
        omitted, tables = len(tables) - limit, tables[:limit]
    counts: dict[str, int] = {}
    estimated = set()
    for key, schema, name, size, rows in tables:
        too_big = exact_max_bytes is not None and size > exact_max_bytes
        if key in estimate or (too_big and key not in exact):
            counts[key] = rows
            estimated.add(key)
            continue
        row = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
        counts[key] = int(row[0]) if row else 0
    return RowCounts(counts, frozenset(estimated), omitted, exact_max_bytes)


def after(connection: Connection, before: RowCounts, exclude: Iterable[str], *, only: frozenset[str] = frozenset(),
          exact_max_bytes: int | None = None) -> RowCounts:
    """The counts to compare with ``before``: each table counted as it was then (new ones by the guard); when
    ``before`` left tables out, only its tables (a table it did not count is not new)."""
    if before.omitted:
        only = (only & frozenset(before.counts)) if only else frozenset(before.counts)
    return count(connection, exclude, only=only, exact_max_bytes=exact_max_bytes, estimate=before.estimated,
                 exact=frozenset(before.counts) - before.estimated)


def compare(before: RowCounts, after: RowCounts, tolerance_percent: float) -> tuple[bool, str]:
    """(passed, detail): every table present before and after within ``tolerance_percent`` of its count before."""
    drifted = []
    for table, was in sorted(before.counts.items()):
        if table not in after.counts:
            continue
        allowed = math.floor(was * tolerance_percent / 100)
        if abs(after.counts[table] - was) > allowed:
            drifted.append(f"{table} {was}→{after.counts[table]}")
    gone = sorted(set(before.counts) - set(after.counts))
    new = sorted(set(after.counts) - set(before.counts))
    detail = f"{len(set(before.counts) & set(after.counts))} tables compared (tolerance {tolerance_percent:g}%)"
    if drifted:
        detail += f"; changed: {', '.join(drifted[:MAX_SHOWN])}" + _more(drifted)
    if gone:
        detail += f"; dropped: {', '.join(gone[:5])}" + _more(gone, 5)
    if new:
        detail += f"; new: {', '.join(new[:5])}" + _more(new, 5)
    estimated = sorted((before.estimated | after.estimated) & (set(before.counts) | set(after.counts)))
    if estimated:
        guard = before.exact_max_bytes if before.exact_max_bytes is not None else after.exact_max_bytes
        over = f" (over {round(guard / 1048576, 3):g} MiB)" if guard is not None else ""
        detail += (f"; estimated from statistics (n_live_tup){over}: {', '.join(estimated[:5])}"
                   + _more(estimated, 5))
    if before.omitted:
        detail += (f"; {before.omitted} tables not counted (more than {len(before.counts)} tables; name the ones "
                   "to compare in verify.rowCounts.tables)")
    return not drifted, detail


def _more(items: list[str], shown: int = MAX_SHOWN) -> str:
    return f" and {len(items) - shown} more" if len(items) > shown else ""
