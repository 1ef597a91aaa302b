"""EXPLAIN of user queries after migrating, with assertions: uses index X, no Seq Scan on table Y, cost below N."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbops import errors

Connection = psycopg.Connection[Any]
MAX_PLAN_CHARS = 700
"""Plan text kept per query: the result (and so status) must fit in 4 KiB with the other fields."""
INDEX_NODES = frozenset({"Index Scan", "Index Only Scan", "Bitmap Index Scan"})
_ANCESTORS = "SELECT relid::oid FROM pg_partition_ancestors(%s::regclass)"


@dataclass(frozen=True)
class QuerySpec:
    """A query to EXPLAIN and what its plan must show."""

    name: str
    sql: str
    analyze: bool = False
    uses_index: tuple[str, ...] = ()
    no_seq_scan_on: tuple[str, ...] = ()
    max_cost: float | None = None


@dataclass
class PlanResult:
    """What the plan of one query showed."""

    name: str
    total_cost: float = 0.0
    execution_ms: float | None = None
    failures: list[str] = field(default_factory=list)
    plan: str = ""

    @property
    def passed(self) -> bool:
        """Whether every assertion held."""
        return not self.failures

    def detail(self) -> str:
        """One line for the verification list: the failures, else the cost and the indexes used."""
        cost = f"total cost {self.total_cost:g}" + (f", {self.execution_ms:g} ms" if self.execution_ms is not None
                                                   else "")
        return f"{'; '.join(self.failures)} ({cost})" if self.failures else cost


def load_queries(document: Any, where: str = "queries") -> tuple[QuerySpec, ...]:
    """Validate a parsed list of ``{name, sql, analyze?, usesIndex?, noSeqScanOn?, maxCost?}``."""
    if document is None:
        return ()
    if not isinstance(document, list):
        raise errors.InvalidSpecError(f"{where}: expected a list of {{name, sql, usesIndex, noSeqScanOn, maxCost}}")
    known = {"name", "sql", "analyze", "usesIndex", "noSeqScanOn", "maxCost"}
    queries = []
    for position, item in enumerate(document, start=1):
        if not isinstance(item, dict) or not {"name", "sql"} <= item.keys() or set(item) - known:
            raise errors.InvalidSpecError(f"{where}: query {position} needs name and sql and may have "
                                          f"analyze, usesIndex, noSeqScanOn, maxCost; got {sorted(item)}")
        lists = {key: item.get(key) or [] for key in ("usesIndex", "noSeqScanOn")}
        if not all(isinstance(value, list) and all(isinstance(v, str) for v in value) for value in lists.values()):
            raise errors.InvalidSpecError(f"{where}: query {item['name']!r}: usesIndex and noSeqScanOn are lists "
                                          "of names")
        max_cost = item.get("maxCost")
        if max_cost is not None and (isinstance(max_cost, bool) or not isinstance(max_cost, int | float)):
            raise errors.InvalidSpecError(f"{where}: query {item['name']!r}: maxCost must be a number")
        queries.append(QuerySpec(name=str(item["name"]), sql=str(item["sql"]), analyze=bool(item.get("analyze")),
                                 uses_index=tuple(lists["usesIndex"]), no_seq_scan_on=tuple(lists["noSeqScanOn"]),
                                 max_cost=None if max_cost is None else float(max_cost)))
    return tuple(queries)


def check_query(connection: Connection, query: QuerySpec) -> PlanResult:
    """EXPLAIN the query (ANALYZE only when asked, always rolled back) and test its assertions."""
    result = PlanResult(name=query.name)
    options = "FORMAT JSON, VERBOSE, COSTS" + (", ANALYZE, BUFFERS" if query.analyze else "")
    try:
        with connection.transaction(force_rollback=True):
            if not query.analyze:
                connection.execute("SET TRANSACTION READ ONLY")  # EXPLAIN alone runs nothing
            row = connection.execute(f"EXPLAIN ({options}) {query.sql}".encode()).fetchone()
    except psycopg.Error as error:
        message = error.diag.message_primary or str(error).strip()
        result.failures.append(f"EXPLAIN failed: {message} (SQLSTATE {error.sqlstate})")
        return result
    document = row[0][0] if row and row[0] else {}
    root = document.get("Plan") or {}
    result.total_cost = float(root.get("Total Cost") or 0.0)
    if "Execution Time" in document:
        result.execution_ms = round(float(document["Execution Time"]), 3)
    nodes = list(_walk(root))
    result.plan = render(nodes)
    with connection.transaction(force_rollback=True):
        result.failures += _index_failures(connection, query, nodes)
        result.failures += _seq_scan_failures(connection, query, nodes)
    if query.max_cost is not None and result.total_cost > query.max_cost:
        result.failures.append(f"total cost {result.total_cost:g} is above maxCost {query.max_cost:g}")
    return result


def _walk(node: dict[str, Any], depth: int = 0, schema: str | None = None) -> Iterator[tuple[int, str | None,
                                                                                            dict[str, Any]]]:
    """(depth, schema, node) of every plan node; an index node without a schema takes its parent's."""
    schema = node.get("Schema") or schema
    yield depth, schema, node
    for child in node.get("Plans") or []:
        yield from _walk(child, depth + 1, schema)


def render(nodes: list[tuple[int, str | None, dict[str, Any]]], limit: int = MAX_PLAN_CHARS) -> str:
    """A compact plan: one line per node (type, relation, index, cost, rows, condition), cut at ``limit``."""
    lines = []
    for depth, schema, node in nodes:
        text = node.get("Node Type", "?")
        if node.get("Relation Name"):
            text += f" on {schema}.{node['Relation Name']}" if schema else f" on {node['Relation Name']}"
        if node.get("Index Name"):
            text += f" using {node['Index Name']}"
        text += f" (cost={node.get('Total Cost', 0):g} rows={node.get('Plan Rows', 0)}"
        if "Actual Total Time" in node:
            text += f" actual={node['Actual Total Time']:g}ms rows={node.get('Actual Rows', 0)}"
        text += ")"
        condition = node.get("Index Cond") or node.get("Filter") or node.get("Hash Cond")
        if condition:
            text += f" {str(condition)[:80]}"
        lines.append("  " * depth + text)
    out = ""
    for position, line in enumerate(lines):
        if len(out) + len(line) + 1 > limit:
            return out + f"… {len(lines) - position} more nodes"
        out += line + "\n"
    return out.rstrip("\n")


def _resolve(connection: Connection, name: str) -> int | None:
    try:
        row = connection.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row and row[0] is not None else None


def _lineage(connection: Connection, schema: str | None, name: str) -> set[int]:
    """The relation (or index) and the partitioned tables (or indexes) it belongs to."""
    qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
    oid = _resolve(connection, qualified)
    if oid is None:
        return set()
    return {int(row[0]) for row in connection.execute(_ANCESTORS, (oid,)).fetchall()} | {oid}


def _index_failures(connection: Connection, query: QuerySpec, nodes: list[tuple[int, str | None, dict[str, Any]]]
                    ) -> list[str]:
    used = [(schema, node["Index Name"]) for _depth, schema, node in nodes
            if node.get("Node Type") in INDEX_NODES and node.get("Index Name")]
    lineages = [_lineage(connection, schema, name) for schema, name in used]
    failures = []
    for wanted in query.uses_index:
        oid = _resolve(connection, wanted)
        if oid is None:
            failures.append(f"usesIndex {wanted}: the index does not exist")
        elif not any(oid in lineage for lineage in lineages):
            shown = ", ".join(sorted({name for _schema, name in used})) or "no index"
            failures.append(f"usesIndex {wanted}: not used (the plan uses {shown})")
    return failures


def _seq_scan_failures(connection: Connection, query: QuerySpec,
                       nodes: list[tuple[int, str | None, dict[str, Any]]]) -> list[str]:
    scanned = [(schema, node["Relation Name"]) for _depth, schema, node in nodes
               if node.get("Node Type") == "Seq Scan" and node.get("Relation Name")]
    failures = []
    for table in query.no_seq_scan_on:
        oid = _resolve(connection, table)
        if oid is None:
            failures.append(f"noSeqScanOn {table}: the table does not exist")
            continue
        hits = [f"{schema}.{name}" for schema, name in scanned if oid in _lineage(connection, schema, name)]
        if hits:
            failures.append(f"noSeqScanOn {table}: Seq Scan on {', '.join(hits[:5])}")
    return failures
