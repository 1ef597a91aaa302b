"""Foreign keys into and out of restored tables: orphan counts and references a restore would break."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql

from dbops import errors

Conn = psycopg.Connection[Any]


@dataclasses.dataclass
class Staged:
    """A restored table, the temporary table holding the backup's rows, and the columns the backup has."""

    table: str
    stage: str
    columns: list[str]


def ident(qualified: str) -> sql.Identifier:
    """``schema.table`` as a quoted SQL identifier."""
    schema, name = qualified.split(".", 1)
    return sql.Identifier(schema, name)


def quoted(qualified: str) -> str:
    """``schema.table`` quoted as text (for a ``::regclass`` cast)."""
    schema, name = qualified.split(".", 1)
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


def count(conn: Conn, query: sql.Composed) -> int:
    """The single integer a ``SELECT count(*)`` returns."""
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


_FOREIGN_KEYS = """
SELECT con.conname, cn.nspname || '.' || cl.relname, fn.nspname || '.' || fl.relname, con.conrelid = ANY (%(relations)s::oid[]),
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[],
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[]
FROM pg_constraint con
JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class fl ON fl.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fl.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND (con.conrelid = ANY (%(relations)s::oid[]) OR con.confrelid = ANY (%(relations)s::oid[]))
ORDER BY 1, 4
"""


@dataclasses.dataclass(frozen=True)
class ForeignKey:
    """A foreign key constraint (on the partitioned parent when there is one)."""

    name: str
    child: str
    parent: str
    child_restored: bool
    columns: tuple[str, ...]
    ref_columns: tuple[str, ...]


def foreign_keys(conn: Conn, tables: list[str]) -> list[ForeignKey]:
    """Foreign keys into and out of the tables (their partitioned ancestors included)."""
    rows = conn.execute(
        "SELECT array_agg(DISTINCT a::oid) FROM unnest(%s::regclass[]) t, "
        "LATERAL (SELECT t UNION SELECT relid FROM pg_partition_ancestors(t)) a(a)", ([quoted(t) for t in tables],),
    ).fetchone()
    relations = list(rows[0]) if rows and rows[0] else []
    return [ForeignKey(name, child, parent, restored, tuple(columns), tuple(ref_columns))
            for name, child, parent, restored, columns, ref_columns
            in conn.execute(_FOREIGN_KEYS, {"relations": relations}).fetchall()]


def orphans(conn: Conn, key: ForeignKey) -> int:
    """Rows of the referencing table with no match (MATCH SIMPLE: rows with a NULL key column never count)."""
    not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in key.columns)
    matches = sql.SQL(" AND ").join(sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(c))
                                    for c, r in zip(key.columns, key.ref_columns, strict=True))
    return count(conn, sql.SQL("SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})")
                  .format(ident(key.child), not_null, ident(key.parent), matches))


def doomed_references(conn: Conn, key: ForeignKey, staged: dict[str, Staged]) -> int:
    """Rows of another table referencing values the restored partitions hold now but the backup does not."""
    leaves = [s for s in staged.values() if set(key.ref_columns) <= set(s.columns)]
    if not leaves or key.child_restored:
        return 0
    not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in key.columns)
    refs = [(c, r) for c, r in zip(key.columns, key.ref_columns, strict=True)]
    def matches(alias: str) -> sql.Composable:
        return sql.SQL(" AND ").join(sql.SQL("{}.{} = c.{}").format(sql.Identifier(alias), sql.Identifier(r),
                                                                   sql.Identifier(c)) for c, r in refs)
    now = sql.SQL(" OR ").join(sql.SQL("EXISTS (SELECT 1 FROM ONLY {} t WHERE {})").format(
        ident(s.table), matches("t")) for s in leaves)
    after = sql.SQL(" OR ").join(sql.SQL("EXISTS (SELECT 1 FROM {} s WHERE {})").format(
        sql.Identifier(s.stage), matches("s")) for s in leaves)
    return count(conn, sql.SQL("SELECT count(*) FROM {} c WHERE {} AND ({}) AND NOT ({})").format(
        ident(key.child), not_null, now, after))


def violation(tables: list[str], problems: list[str], strategy: str) -> errors.DbopsError:
    """The error for a table restore rolled back because foreign keys would break."""
    hint = "; restore the referencing tables too, or use --strategy merge to keep newer rows" \
        if strategy == "replace" else ""
    return errors.PermanentError(
        f"restoring {', '.join(tables)} would break foreign keys, so it was rolled back and nothing changed: "
        f"{'; '.join(problems)}{hint}", reason="ForeignKeyViolation")


