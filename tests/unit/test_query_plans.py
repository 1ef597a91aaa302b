"""Pure parts of the query-plan and size verifications: query lists, plan text, size changes."""

from __future__ import annotations

import pytest

from dbops import errors
from dbops.runner import query_plans, relation_sizes


def test_queries_are_validated_naming_the_query() -> None:
    loaded = query_plans.load_queries([{"name": "a", "sql": "SELECT 1", "usesIndex": ["i"], "maxCost": 3}])
    assert loaded[0].uses_index == ("i",) and loaded[0].max_cost == 3.0 and not loaded[0].analyze
    with pytest.raises(errors.InvalidSpecError, match="query 'a': maxCost must be a number"):
        query_plans.load_queries([{"name": "a", "sql": "SELECT 1", "maxCost": "cheap"}])
    with pytest.raises(errors.InvalidSpecError, match="query 1 needs name and sql"):
        query_plans.load_queries([{"name": "a", "sql": "SELECT 1", "usesindex": ["i"]}])


def test_plan_text_is_bounded_and_says_what_was_cut() -> None:
    node = {"Node Type": "Seq Scan", "Relation Name": "bookings", "Total Cost": 1.5, "Plan Rows": 10,
            "Filter": "(status = 'x')"}
    nodes = [(depth, "public", node) for depth in range(40)]
    text = query_plans.render(nodes, limit=300)
    assert len(text) <= 320 and text.endswith("more nodes") and "Seq Scan on public.bookings" in text


def test_size_changes_put_created_and_dropped_first_and_bound_the_list() -> None:
    table = relation_sizes.Relation("table", "", 8192, 10, 0)
    before = {"public.a": table, "public.a_idx": relation_sizes.Relation("index", "public.a", 100, 0, 7),
              "public.same": table, **{f"public.t{n}": table for n in range(5)}}
    after = {"public.a": relation_sizes.Relation("table", "", 16384, 20, 0), "public.same": table,
             "public.b_idx": relation_sizes.Relation("index", "public.a", 200, 0, 0),
             **{f"public.t{n}": relation_sizes.Relation("table", "", 8192 + n, 10, 0) for n in range(5)}}
    report = relation_sizes.changes(before, after, top=2)
    assert [i["name"] for i in report["indexes"]] == ["public.b_idx", "public.a_idx"]  # by size change
    assert report["indexes"][1] == {"name": "public.a_idx", "table": "public.a", "bytesBefore": 100,
                                    "bytesAfter": None, "scansBefore": 7, "scansAfter": None}
    assert [t["name"] for t in report["tables"]] == ["public.a", "public.t4"]
    assert report["omitted"] == 3  # t1..t3 changed; t0 and "same" did not
