"""Post-migration verification: foreign keys and orphans, invalid indexes, row counts, user SQL checks."""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.runner import row_counts as row_count

if TYPE_CHECKING:
    from dbops.api.common import SqlCheck
    from dbops.runner import query_plans  # imported when there are queries to check (P6 start-up)

Connection = psycopg.Connection[Any]
BUILTINS = ("foreignKeys", "orphans", "invalidIndexes", "rowCounts")

_FOREIGN_KEYS = """
SELECT con.conname, cn.nspname, cl.relname, fn.nspname, fl.relname, con.convalidated,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[],
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[]
FROM pg_constraint con
JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class fl ON fl.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fl.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND cn.nspname NOT IN ('pg_catalog', 'information_schema') AND cn.nspname NOT LIKE 'pg\\_%'
ORDER BY cn.nspname, cl.relname, con.conname
"""

_INVALID_INDEXES = """
SELECT n.nspname, c.relname, t.relname
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (NOT i.indisvalid OR NOT i.indisready)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

@dataclass(frozen=True)
class CheckResult:
    """The outcome of one verification."""

    name: str
    passed: bool
    detail: str
    plan: str = ""
    """The compact plan of a ``query:`` verification."""

    def as_result(self) -> dict[str, Any]:
        """The ``verification[]`` entry of the result JSON."""
        entry: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.plan:
            entry["plan"] = self.plan
        return entry


@dataclass(frozen=True)
class VerifyConfig:
    """Which verifications to run and how strictly."""

    builtins: tuple[str, ...] = BUILTINS
    checks: tuple[SqlCheck, ...] = ()
    row_count_tolerance_percent: float = 0.0
    exclude_tables: frozenset[str] = field(default_factory=frozenset)
    row_count_tables: frozenset[str] = field(default_factory=frozenset)
    """Compare the row counts of only these ``schema.table`` (empty: every table not excluded)."""
    statement_timeout: str = "5min"
    queries: tuple[query_plans.QuerySpec, ...] = ()
    """Queries to EXPLAIN, with assertions on their plans."""
    orphan_scan_max_bytes: int | None = None
    """Skip orphan counts on referencing tables larger than this (None: count on every table)."""
    row_count_exact_max_bytes: int | None = None
    """Estimate the row counts of tables larger than this (None: count every table exactly)."""


def parse_builtins(text: str) -> tuple[str, ...]:
    """Parse ``foreignKeys,orphans,…`` (empty or ``none`` for no builtins)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in BUILTINS]
    if unknown:
        raise errors.InvalidSpecError(f"unknown builtin verification {unknown}; choose from {', '.join(BUILTINS)}")
    return names


def load_checks(document: Any, where: str = "checks") -> tuple[SqlCheck, ...]:
    """Validate a parsed list of user checks with the CRDs' own model (one grammar for spec and flag)."""
    # Imported here: `dbops migrate` without checks starts without pydantic (P6).
    from pydantic import TypeAdapter, ValidationError

    from dbops.api.common import SqlCheck

    if document is None:
        return ()
    try:
        return tuple(TypeAdapter(list[SqlCheck]).validate_python(_equals_as_text(document)))
    except ValidationError as error:
        problems = "; ".join(f"{_location(where, e['loc'], document)}: {e['msg']}" for e in error.errors()[:5])
        raise errors.InvalidSpecError(f"{where}: {problems}") from None


def _location(where: str, loc: tuple[int | str, ...], document: Any) -> str:
    """``check 'name'.expect.rows`` (or ``check 2`` when the item has no name) for an error's location."""
    if not loc:
        return "expected a list of {name, sql, expect}"
    position, rest = loc[0], ".".join(str(part) for part in loc[1:])
    item = document[position] if isinstance(position, int) and isinstance(document, list) else None
    name = item.get("name") if isinstance(item, dict) else None
    label = f"check {name!r}" if isinstance(name, str) else f"check {int(position) + 1}"
    return f"{label}.{rest}" if rest else label


def _equals_as_text(document: Any) -> Any:
    """A checks file may say `equals: 2` or `equals: true` (YAML scalars): give them as the CRD's text."""
    # Done here, not in the model: the model must refuse a number exactly as the API server does (admission fuzz).
    if not isinstance(document, list):
        return document
    converted = []
    for item in document:
        expect = item.get("expect") if isinstance(item, dict) else None
        if not isinstance(expect, dict):
            converted.append(item)
            continue
        value = expect.get("equals")
        if isinstance(value, bool):
            item = {**item, "expect": {**expect, "equals": "true" if value else "false"}}
        elif isinstance(value, int | float):
            item = {**item, "expect": {**expect, "equals": str(value)}}
        converted.append(item)
    return converted


def load_document(path: Path, what: str) -> Any:
    """The JSON or YAML document in ``path``; ``what`` names the file in errors (e.g. "checks file")."""
    if not path.is_file():
        raise errors.NotFoundError(f"{what} {path} does not exist")
    import yaml  # only for these files: importing it costs `dbops migrate apply` ~10 ms of start-up (P6)

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise errors.InvalidSpecError(f"{path}: not valid JSON/YAML: {error}") from error


def load_checks_file(path: Path) -> tuple[SqlCheck, ...]:
    """Load user checks from a JSON or YAML file."""
    return load_checks(load_document(path, "checks file"), str(path))


def row_counts(connection: Connection, exclude: Iterable[str] = ()) -> dict[str, int]:
    """Exact ``count(*)`` of every user table (partitioned tables counted once), keyed ``schema.table``."""
    return row_count.count(connection, exclude).counts


def load_row_counts(path: Path) -> dict[str, int]:
    """Read row counts written by ``--row-counts-out``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise errors.InvalidSpecError(f"row counts file {path}: {error}") from error
    if not isinstance(document, dict) or not all(isinstance(v, int) for v in document.values()):
        raise errors.InvalidSpecError(f"row counts file {path}: expected an object of table → count")
    return {str(k): int(v) for k, v in document.items()}


def verify(connection: Connection, config: VerifyConfig,
           before: dict[str, int] | row_count.RowCounts | None = None) -> list[CheckResult]:
    """Run the configured verifications; every result says passed or not with a detail line."""
    results: list[CheckResult] = []
    with _timeout(connection, config.statement_timeout):
        if "foreignKeys" in config.builtins or "orphans" in config.builtins:
            results += check_foreign_keys(connection, with_orphans="orphans" in config.builtins,
                                          with_summary="foreignKeys" in config.builtins,
                                          max_bytes=config.orphan_scan_max_bytes)
        if "invalidIndexes" in config.builtins:
            results.append(check_invalid_indexes(connection))
        if "rowCounts" in config.builtins:
            counted = row_count.RowCounts(before) if isinstance(before, dict) else before
            _refuse_unknown_tables(connection, config.row_count_tables, counted.counts if counted else {})
            if counted is None:
                results.append(CheckResult("rowCounts", True, "skipped: no row counts from before the migration"))
            else:
                if config.row_count_tables:
                    counted = dataclasses.replace(counted, counts=_only(counted.counts, config.row_count_tables))
                now = row_count.after(connection, counted, config.exclude_tables, only=config.row_count_tables,
                                      exact_max_bytes=config.row_count_exact_max_bytes)
                passed, detail = row_count.compare(counted, now, config.row_count_tolerance_percent)
                results.append(CheckResult("rowCounts", passed, detail))
        for check in config.checks:
            results.append(run_user_check(connection, check))
        results += _query_checks(connection, config.queries)
    return results


def _query_checks(connection: Connection, queries: tuple[query_plans.QuerySpec, ...]) -> list[CheckResult]:
    if not queries:
        return []
    from dbops.runner import query_plans  # only with queries (P6 start-up)

    results = []
    for query in queries:
        plan = query_plans.check_query(connection, query)
        results.append(CheckResult(f"query:{plan.name}", plan.passed, plan.detail(), plan.plan))
    return results


def _refuse_unknown_tables(connection: Connection, tables: frozenset[str], before: dict[str, int]) -> None:
    """A table named for row counts that exists neither now nor before is a typo: comparing nothing would pass."""
    unknown = sorted(name for name in tables if name not in before and connection.execute(
        "SELECT to_regclass(%s) IS NULL", [str(sql.Identifier(*name.split(".", 1)).as_string(connection))]
    ).fetchone() == (True,))
    if unknown:
        raise errors.InvalidSpecError(
            f"row counts: no table {', '.join(unknown)} in the database (--row-count-tables / "
            "spec.verify.rowCounts.tables)")


def _only(counts: dict[str, int], tables: frozenset[str]) -> dict[str, int]:
    return {table: count for table, count in counts.items() if table in tables}


def check_foreign_keys(connection: Connection, *, with_orphans: bool = True, with_summary: bool = True,
                       max_bytes: int | None = None) -> list[CheckResult]:
    """Count orphan rows of every foreign key, NOT VALID ones included (MATCH SIMPLE semantics).

    With ``max_bytes``, referencing tables larger than that are not scanned (named in the detail).
    """
    keys = connection.execute(_FOREIGN_KEYS).fetchall()
    results = []
    broken = []
    not_valid = []
    too_big: list[str] = []
    for name, schema, table, ref_schema, ref_table, validated, columns, ref_columns in keys:
        if not validated:
            not_valid.append(f"{schema}.{table}.{name}")
        if max_bytes is not None and _table_bytes(connection, schema, table) > max_bytes:
            too_big.append(f"{schema}.{table}.{name}")
            continue
        orphans = _count_orphans(connection, schema, table, ref_schema, ref_table, columns, ref_columns)
        if orphans:
            broken.append(name)
            if with_orphans:
                results.append(CheckResult(
                    f"orphans:{schema}.{table}.{name}", False,
                    f"{orphans} rows of {schema}.{table}({', '.join(columns)}) have no match in "
                    f"{ref_schema}.{ref_table}({', '.join(ref_columns)})"
                    + ("" if validated else " (constraint is NOT VALID)"),
                ))
    if with_summary:
        detail = f"{len(keys)} foreign keys checked, {len(not_valid)} NOT VALID"
        if not_valid:
            detail += f" ({', '.join(not_valid[:5])})"
        detail += f"; {len(broken)} with orphan rows" if broken else "; every foreign key holds"
        if too_big:
            detail += (f"; orphan count skipped on {len(too_big)} keys of tables over {max_bytes} bytes "
                       f"({', '.join(too_big[:5])}; raise the size guard to count them)")
        results.insert(0, CheckResult("foreignKeys", not broken, detail))
    elif with_orphans and not broken:
        results.append(CheckResult("orphans", True, f"no orphan rows in {len(keys)} foreign keys"))
    return results


def _table_bytes(connection: Connection, schema: str, table: str) -> int:
    # Partitioned tables have no storage of their own: add up the partition tree (empty for plain tables).
    row = connection.execute(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(t.oid)),"
        " pg_total_relation_size(t.oid)) FROM (SELECT format('%%I.%%I', %s::text, %s::text)::regclass AS oid) t",
        (schema, table),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _count_orphans(connection: Connection, schema: str, table: str, ref_schema: str, ref_table: str,
                   columns: list[str], ref_columns: list[str]) -> int:
    not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in columns)
    matches = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(c))
        for c, r in zip(columns, ref_columns, strict=True)
    )
    query = sql.SQL("SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
        sql.Identifier(schema, table), not_null, sql.Identifier(ref_schema, ref_table), matches
    )
    row = connection.execute(query).fetchone()
    return int(row[0]) if row else 0


def check_invalid_indexes(connection: Connection) -> CheckResult:
    """Fail on indexes left invalid (e.g. by a failed ``CREATE INDEX CONCURRENTLY``)."""
    invalid = [f"{schema}.{index} on {table}" for schema, index, table in connection.execute(_INVALID_INDEXES)]
    if invalid:
        return CheckResult("invalidIndexes", False,
                           f"{len(invalid)} invalid indexes: {', '.join(invalid[:10])} (drop and recreate them)")
    return CheckResult("invalidIndexes", True, "no invalid indexes")


def compare_row_counts(before: dict[str, int], after: dict[str, int], tolerance_percent: float) -> CheckResult:
    """Compare row counts of the tables present before and after, within a tolerance in percent."""
    passed, detail = row_count.compare(row_count.RowCounts(before), row_count.RowCounts(after), tolerance_percent)
    return CheckResult("rowCounts", passed, detail)


def run_user_check(connection: Connection, check: SqlCheck) -> CheckResult:
    """Run one user check in a read-only transaction and compare with its expectation."""
    try:
        with connection.transaction(force_rollback=True):
            connection.execute("SET TRANSACTION READ ONLY")
            rows = connection.execute(check.sql.encode()).fetchall()
    except psycopg.Error as error:
        message = error.diag.message_primary or str(error).strip()
        return CheckResult(check.name, False, f"query failed: {message} (SQLSTATE {error.sqlstate})")
    return evaluate_expectation(check, rows)


def evaluate_expectation(check: SqlCheck, rows: list[tuple[Any, ...]]) -> CheckResult:
    """Compare query rows with ``rows`` (row count), ``min``/``max``/``equals`` (first column of the first row)."""
    expect = check.expect
    problems = []
    if expect.rows is not None and len(rows) != expect.rows:
        problems.append(f"expected {expect.rows} rows, got {len(rows)}")
    value = rows[0][0] if rows and rows[0] else None
    if expect.min is not None or expect.max is not None or expect.equals is not None:
        if not rows:
            problems.append("expected a value, the query returned no rows")
        else:
            if expect.equals is not None and not _equal(value, expect.equals):
                problems.append(f"expected {expect.equals!r}, got {value!r}")
            if expect.min is not None and not _compare(value, expect.min, lambda a, b: a >= b):
                problems.append(f"expected at least {expect.min!r}, got {value!r}")
            if expect.max is not None and not _compare(value, expect.max, lambda a, b: a <= b):
                problems.append(f"expected at most {expect.max!r}, got {value!r}")
    if problems:
        return CheckResult(check.name, False, "; ".join(problems))
    shown = f"{len(rows)} rows" if expect.rows is not None else f"value {value!r}"
    return CheckResult(check.name, True, f"{shown} as expected")


def _equal(value: Any, expected: str) -> bool:
    """Whether a value equals the expected text: booleans as true/false (t/f), numbers by value
    (``5`` equals ``5.00``), anything else as its text."""
    if value is None:
        return False
    if isinstance(value, bool):
        return expected.strip().lower() in (("true", "t") if value else ("false", "f"))
    if isinstance(value, int | float | decimal.Decimal):
        with contextlib.suppress(decimal.InvalidOperation):
            return decimal.Decimal(str(value)) == decimal.Decimal(expected.strip())
    return str(value) == expected


def _compare(value: Any, bound: Any, operator: Any) -> bool:
    try:
        return bool(operator(float(value), float(bound)))
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _timeout(connection: Connection, statement_timeout: str) -> Any:
    connection.execute("SELECT set_config('statement_timeout', %s, false)", (statement_timeout,))
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            connection.execute("RESET statement_timeout")
