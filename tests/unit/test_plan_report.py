"""The complete plan report: framing in the pod log, the ConfigMap, status.plan's capped lists and their counts."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from dbops.api import plan_report
from dbops.api.migration import DatabaseMigrationStatus
from dbops.api.migration_plan import MigrationPlan, PlanReport
from dbops.cli import migrate_output
from dbops.reconcile.actions import Decision
from dbops.reconcile.plan_report import STATUS_LINT_LIMIT, PlanReportObserved, plan_status
from dbops.runner import result
from dbops.specs import plan_report as plan_report_specs
from dbops.specs.owner import Owner

OWNER = Owner("DatabaseMigration", "shop", "orders-schema", "uid-1", 3)


def finding(n: int, message: str = "") -> dict[str, Any]:
    return {"version": f"{n:04d}", "rule": "require-timeout-settings", "level": "warning", "line": n,
            "message": message or f"Missing `set lock_timeout` before potentially slow operations ({n})",
            "destructive": False, "file": f"{n:04d}_add_column_{n}.up.sql"}


def document(findings: int, pending: int = 3, plan_hash: str = "ab" * 32) -> dict[str, Any]:
    return result.success("migrate plan", f"{pending} pending (up)", plan={
        "hash": plan_hash, "direction": "up", "pending": [f"{n:04d}" for n in range(1, pending + 1)],
        "lint": [finding(n) for n in range(1, findings + 1)], "destructive": False}, currentVersion=None)


def framed(doc: dict[str, Any]) -> plan_report.FramedReport:
    found = plan_report.find(plan_report.frame(doc) + "\n")
    assert isinstance(found, plan_report.FramedReport)
    return found


def test_the_framed_line_survives_a_noisy_log_and_a_cut_one_is_refused() -> None:
    doc = document(104)
    doc["plan"]["lint"][0]["message"] = "line one\nline two \u2014 with a dash"
    line = plan_report.frame(doc)
    assert "\n" not in line
    log = f"WARNING something\n{plan_report.frame(document(1))}\n{line}\ndbops migrate plan: 3 pending\n"
    found = plan_report.find(log)
    assert isinstance(found, plan_report.FramedReport)
    assert found.document == doc  # the last frame wins, byte for byte the same JSON
    cut = plan_report.find(log[: log.index(line) + len(line) // 2])
    assert isinstance(cut, str) and "incomplete" in cut
    assert plan_report.find("just a log\n") == "the plan Job's log holds no plan report"


def test_the_cap_says_exactly_how_many_were_left_out_and_where() -> None:
    report = framed(document(104))
    observed = PlanReportObserved("orders-schema-plan", report=report,
                                  manifest=plan_report_specs.build_config_map(OWNER, report, revision="r1"))
    decision = Decision(DatabaseMigrationStatus())
    plan = plan_status(document(104)["plan"], observed, None, decision)
    assert plan is not None and plan.report is not None
    assert len(plan.lint) == STATUS_LINT_LIMIT + 1
    assert plan.lint[-1] == "… 4 more in ConfigMap orders-schema-plan key findings.txt"
    assert plan.lint[0].startswith("0001 0001_add_column_1.up.sql:1 warning require-timeout-settings: Missing")
    assert plan.report.model_dump(by_alias=True) == {
        "available": True, "configMap": "orders-schema-plan", "key": "report.json", "findingsKey": "findings.txt",
        "findings": 104, "pending": 3, "sha256": report.sha256, "sizeBytes": len(report.data.encode()),
        "message": "complete plan report in ConfigMap orders-schema-plan"}
    assert decision.create == [observed.manifest] and decision.apply == []
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "PlanReportStored")]
    assert "104 lint findings" in decision.events[0].message
    # 100 findings exactly: nothing left out, so no marker.
    exact = framed(document(100))
    assert plan_status(document(100)["plan"], PlanReportObserved("x", report=exact), None,
                       Decision(DatabaseMigrationStatus())).lint[-1].startswith("0100 ")  # type: ignore[union-attr]


def test_without_the_report_the_capped_result_is_counted_right_and_said_to_be_incomplete() -> None:
    """Issue 11: 104 findings were shown as "4 + 4 more". The count must add up to the real total."""
    capped = json.loads(result.encode_result(document(104)))
    shown = capped["plan"]["lint"]
    assert isinstance(shown[-1], str) and len(shown) < 104
    decision = Decision(DatabaseMigrationStatus())
    problem = "the plan Job orders-schema-plan-1's pod or its log is gone"
    plan = plan_status(capped["plan"], PlanReportObserved("orders-schema-plan", problem=problem), None, decision)
    assert plan is not None and plan.report is not None
    hidden = int(plan.lint[-1].split()[1])
    assert len(plan.lint) - 1 + hidden == 104
    assert plan.lint[-1].endswith(f"more (the complete report is unavailable: {problem})")
    assert plan.report.available is False and plan.report.findings == 104 and plan.report.message == problem
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "PlanReportUnavailable")]
    assert "104 lint findings" in decision.events[0].message and decision.create == decision.apply == []
    # The same problem on the next reconcile: no second Event.
    again = Decision(DatabaseMigrationStatus())
    plan_status(capped["plan"], PlanReportObserved("orders-schema-plan", problem=problem), plan, again)
    assert again.events == []


def test_the_config_map_is_owned_labelled_and_holds_the_approved_plan() -> None:
    report = framed(document(30))
    manifest = plan_report_specs.build_config_map(OWNER, report, revision="r1")
    assert manifest is not None
    meta = manifest["metadata"]
    assert meta["name"] == plan_report_specs.config_map_name(OWNER, "r1", "ab" * 32) and meta["namespace"] == "shop"
    assert meta["name"].startswith("orders-schema-plan-") and manifest["immutable"] is True
    assert meta["labels"]["dbops.io/role"] == "plan"
    other = plan_report_specs.build_config_map(OWNER, framed(document(30, plan_hash="cd" * 32)), revision="r1")
    assert other is not None and other["metadata"]["name"] != meta["name"], "a new plan would change the approved one"
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["kind"] == "DatabaseMigration"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "dbops"
    assert meta["annotations"] == {"dbops.io/revision": "r1", "dbops.io/plan-hash": "ab" * 32,
                                   "dbops.io/report-sha256": report.sha256}
    data = manifest["data"]
    assert data["report.json"] == report.data and data["planHash"] == "ab" * 32
    text = data["findings.txt"].splitlines()
    assert text[0] == f"plan {'ab' * 32}: 30 lint findings, 3 pending" and len(text) == 31


def test_a_report_larger_than_a_config_map_is_refused_and_a_large_text_gives_way() -> None:
    big = document(1, pending=1)
    big["plan"]["lint"] = [finding(n, "x" * 2000) for n in range(1, 600)]  # about 1.2 MiB
    assert plan_report_specs.build_config_map(OWNER, framed(big), revision="r") is None
    half = document(1, pending=1)
    half["plan"]["lint"] = [finding(n, "y" * 2000) for n in range(1, 300)]  # fits alone, not with its text
    data = plan_report_specs.report_data(framed(half))
    assert data is not None and data["report.json"] == framed(half).data
    assert data["findings.txt"].startswith("the findings text did not fit")


def test_the_plan_command_prints_the_framed_report(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    doc = document(104)
    args = argparse.Namespace(format="json", output=None, report_line=True)
    code = migrate_output.publish(doc, args, "dbops migrate plan: 3 pending")
    assert code == 0
    out = capsys.readouterr().out
    found = plan_report.find(out)
    assert isinstance(found, plan_report.FramedReport) and found.document == doc
    assert out.count("\n") == 1  # one line, not the indented JSON as well


def test_the_status_model_defaults() -> None:
    assert MigrationPlan().pending_count == 0
    assert MigrationPlan(pending=["1", "2"], report=PlanReport(pending=250)).pending_count == 250
