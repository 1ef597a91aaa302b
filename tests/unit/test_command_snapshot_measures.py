"""Command mode's snapshot of row counts and sizes: what the init container is asked for, the compact form it
keeps, and how the counts and sizes compare after the command (estimates and bounds said, never silent)."""

from __future__ import annotations

import json

from tests.unit.test_specs_command_jobs import IMAGE, OWNER, spec

from dbops.reconcile import results
from dbops.runner import relation_sizes, result, row_counts
from dbops.specs import command_jobs


def snapshot_args(**verify: object) -> list[str]:
    job = command_jobs.build_command_job(OWNER, spec(verify=verify), revision="r1", image=IMAGE)
    (init,) = job["spec"]["template"]["spec"]["initContainers"]
    return list(init["args"])


def test_the_snapshot_counts_rows_only_when_rowcounts_is_verified_with_the_same_tables_and_framework() -> None:
    plain = snapshot_args(builtin=["foreignKeys"], sizes={"top": 0})
    assert "--row-counts" not in plain and "--sizes" not in plain
    args = snapshot_args(builtin=["rowCounts"], rowCounts={"tables": ["bookings", "app.users"], "framework": "django",
                                                           "tolerancePercent": 5})
    assert args[args.index("--framework") + 1] == "django"
    assert "--row-counts" in args and args[args.index("--row-count-tables") + 1] == "bookings,app.users"
    assert "--sizes" in args  # sizes.top defaults to 10
    # the verify Job leaves out the same bookkeeping tables and compares the same tables
    verify = command_jobs.verify_db_args(spec(verify={"builtin": ["rowCounts"], "rowCounts": {
        "tables": ["bookings", "app.users"], "framework": "django", "tolerancePercent": 5}}), checks_file=False)
    assert verify[verify.index("--row-count-tables") + 1] == "bookings,app.users"
    assert verify[verify.index("--framework") + 1] == "django" and "--row-count-tolerance" in verify


def test_row_counts_round_trip_in_their_compact_form() -> None:
    counted = row_counts.RowCounts({"public.a": 3, "public.big": 10_000_000}, frozenset({"public.big"}), 2, 1 << 28)
    wire = json.loads(json.dumps(counted.to_wire()))
    assert row_counts.RowCounts.from_wire(wire) == counted
    assert row_counts.RowCounts.from_wire({"public.a": 3}) == row_counts.RowCounts({"public.a": 3})


def test_a_count_outside_the_tolerance_fails_naming_the_table_and_its_counts() -> None:
    before = row_counts.RowCounts({"public.bookings": 500, "public.users": 200})
    after = row_counts.RowCounts({"public.bookings": 450, "public.users": 200})
    passed, detail = row_counts.compare(before, after, 5)
    assert not passed and "public.bookings 500→450" in detail and "tolerance 5%" in detail
    assert "users" not in detail
    assert row_counts.compare(before, after, 10)[0]  # 50 of 500 is exactly 10%
    assert not row_counts.compare(before, after, 9.9)[0]


def test_estimated_and_uncounted_tables_are_named() -> None:
    before = row_counts.RowCounts({"public.events": 1_000_000, "public.a": 1}, frozenset({"public.events"}), 7,
                                  256 * 1048576)
    after = row_counts.RowCounts({"public.events": 1_000_100, "public.a": 1}, frozenset({"public.events"}))
    passed, detail = row_counts.compare(before, after, 1)
    assert passed
    assert "estimated from statistics (n_live_tup) (over 256 MiB): public.events" in detail
    assert "7 tables not counted" in detail and "verify.rowCounts.tables" in detail


def test_long_lists_say_how_many_more() -> None:
    before = row_counts.RowCounts({f"public.t{n:02d}": 100 for n in range(15)})
    after = row_counts.RowCounts({f"public.t{n:02d}": 50 for n in range(15)})
    passed, detail = row_counts.compare(before, after, 0)
    assert not passed and "and 5 more" in detail and detail.count("→") == 10


def test_sizes_round_trip_bounded_to_the_largest() -> None:
    relations = {f"public.t{n}": relation_sizes.Relation("table", "", 1000 * n, n, 0) for n in range(1, 6)}
    relations["public.t5_idx"] = relation_sizes.Relation("index", "public.t5", 99_999, 0, 4)
    wire = json.loads(json.dumps(relation_sizes.to_wire(relations, limit=3)))
    kept, omitted = relation_sizes.from_wire(wire)
    assert omitted == 3 and sorted(kept) == ["public.t4", "public.t5", "public.t5_idx"]
    assert kept["public.t5_idx"] == relations["public.t5_idx"]
    assert relation_sizes.from_wire(relation_sizes.to_wire(relations)) == (relations, 0)


def test_sizes_before_and_after_with_a_partial_snapshot_say_what_is_not_shown() -> None:
    table = relation_sizes.Relation("table", "", 8192, 10, 0)
    before = {"public.big": relation_sizes.Relation("table", "", 1 << 30, 10, 0)}
    after = {"public.big": relation_sizes.Relation("table", "", (1 << 30) + 8192, 11, 0), "public.small": table,
             "public.new_idx": relation_sizes.Relation("index", "public.big", 8192, 0, 0)}
    report = relation_sizes.changes(before, after, top=5, before_omitted=1)
    assert [t["name"] for t in report["tables"]] == ["public.big"] and report["indexes"] == []
    assert report["tables"][0]["bytesBefore"] == 1 << 30
    assert "1 more left out" in report["note"] and "not shown" in report["note"]
    complete = relation_sizes.changes(before, after, top=5)
    assert [i["name"] for i in complete["indexes"]] == ["public.new_idx"] and "note" not in complete
    assert complete["indexes"][0]["bytesBefore"] is None


def many_sizes(count: int) -> dict[str, object]:
    tables = [{"name": f"public.wagtailcore_table_{n:02d}", "bytesBefore": 8192 * n, "bytesAfter": 16384 * n,
               "rowsBefore": n, "rowsAfter": 2 * n} for n in range(count)]
    indexes = [{"name": f"public.wagtailcore_page_path_{n:02d}_like", "table": "public.wagtailcore_page",
                "bytesBefore": None, "bytesAfter": 16384, "scansBefore": None, "scansAfter": 0} for n in range(count)]
    return {"tables": tables, "indexes": indexes, "omitted": 4}


def test_sizes_cut_by_the_4_kib_cap_still_reach_status_with_the_cut_counted() -> None:
    """Regression: a '... N more' marker in sizes.tables failed the whole model, so status.sizes vanished."""
    document = result.success("verify-db", "3 verifications passed", sizes=many_sizes(25),
                              verification=[{"name": "rowCounts", "passed": True, "detail": "9 tables compared"}])
    capped = json.loads(result.encode_result(document))
    assert capped.get("truncated")
    status_sizes = results.size_changes(capped["sizes"])
    assert status_sizes is not None and status_sizes.tables and status_sizes.indexes
    shown = len(status_sizes.tables) + len(status_sizes.indexes)
    assert status_sizes.omitted == 4 + 50 - shown and "4 KiB" in status_sizes.note


def test_verify_db_fits_sizes_into_the_room_the_result_leaves() -> None:
    document = result.success("verify-db", "3 verifications passed",
                              verification=[{"name": "rowCounts", "passed": True, "detail": "9 tables compared"}],
                              frameworkHistory=[{"framework": "django", "added": [f"app.{n:04d}_x" for n in range(20)]}])
    room = result.MAX_RESULT_BYTES - len(result.encode_result(document)) - 20
    fitted = relation_sizes.fit(many_sizes(25), room)
    whole = json.loads(result.encode_result({**document, "sizes": fitted}))
    assert not whole.get("truncated") and len(whole["frameworkHistory"][0]["added"]) == 20
    kept = len(fitted["tables"]) + len(fitted["indexes"])
    assert 0 < kept < 50 and fitted["omitted"] == 4 + 50 - kept and "4 KiB" in fitted["note"]
    assert abs(len(fitted["tables"]) - len(fitted["indexes"])) <= 1  # the longer list loses first
    small = many_sizes(2)
    assert relation_sizes.fit(small, 4096) == {**small, "tables": small["tables"], "indexes": small["indexes"]}
