"""status.plan of a SQL migration: the capped lists, where the complete report is, and its ConfigMap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dbops.api import plan_report
from dbops.api.migration_plan import MigrationPlan, PlanReport
from dbops.reconcile.actions import Decision

STATUS_LINT_LIMIT = 100
"""Findings shown in status.plan.lint; a last line says how many more and where."""
STATUS_PENDING_LIMIT = 1000
"""Pending versions shown in status.plan.pending."""
STATUS_ITEM_CHARS = 512
# The runner's result protocol ends a list it shortened with "... N more" (dbops.runner.result).
_RESULT_MORE = re.compile(r"^\.\.\. (\d+) more$")


@dataclass(frozen=True)
class PlanReportObserved:
    """What the controller found of the plan's complete report once the plan Job finished."""

    config_map: str
    """The ConfigMap that holds (or would hold) it."""
    report: plan_report.FramedReport | None = None
    """The report, from that ConfigMap or read from the plan Job's log."""
    manifest: dict[str, Any] | None = None
    """The ConfigMap to create (missing; it is immutable, see dbops.specs.plan_report)."""
    problem: str = ""
    """Why the report is not available (then `report` and `manifest` are None)."""


def shortened(items: Any) -> tuple[list[Any], int]:
    """The items of a list from the runner's capped result, and how many of them its "... N more" marker hid."""
    values = list(items) if isinstance(items, list) else []
    if values and isinstance(values[-1], str) and (marker := _RESULT_MORE.match(values[-1])):
        return values[:-1], int(marker[1])
    return values, 0


def _item(text: str) -> str:
    return text if len(text) <= STATUS_ITEM_CHARS else text[:STATUS_ITEM_CHARS - 1] + "…"


def plan_status(result_plan: Any, observed: PlanReportObserved | None, previous: MigrationPlan | None,
                decision: Decision) -> MigrationPlan | None:
    """status.plan from the plan Job's capped result and the complete report; asks for the report's ConfigMap
    and records an Event when it is written or when it cannot be (never a silently cut list)."""
    if not isinstance(result_plan, dict):
        return None
    plan_hash = str(result_plan.get("hash") or "")
    report = observed.report if observed is not None else None
    ref: PlanReport | None
    if observed is not None and report is not None:
        document = plan_report.plan_of(report.document)
        lint, lint_total = plan_report.lint_items(report.document), None
        pending, pending_total = list(document.get("pending") or []), None
        cm = observed.config_map
        lint_where = f"in ConfigMap {cm} key {plan_report.FINDINGS_KEY}"
        pending_where = f"in ConfigMap {cm} key {plan_report.REPORT_KEY} (.plan.pending)"
        ref = PlanReport(available=True, config_map=cm, key=plan_report.REPORT_KEY,
                         findings_key=plan_report.FINDINGS_KEY, findings=len(lint), pending=len(pending),
                         sha256=report.sha256, size_bytes=len(report.data.encode()),
                         message=f"complete plan report in ConfigMap {cm}")
        if observed.manifest is not None:
            decision.create.append(observed.manifest)
            decision.event("Normal", "PlanReportStored",
                           f"complete plan report ({len(lint)} lint findings, {len(pending)} pending) "
                           f"in ConfigMap {cm} (sha256 {report.sha256[:12]})")
    else:
        lint, hidden = shortened(result_plan.get("lint"))
        lint_total = len(lint) + hidden
        pending, hidden_pending = shortened(result_plan.get("pending"))
        pending_total = len(pending) + hidden_pending
        # Not observed (no plan Job log to look at): the capped lists only, their markers saying what is left out.
        problem = observed.problem if observed is not None else "not read"
        lint_where = pending_where = f"(the complete report is unavailable: {problem})"
        ref = PlanReport(available=False, config_map=observed.config_map, findings=lint_total,
                         pending=pending_total, message=problem) if observed is not None else None
        if observed is not None and (previous is None or previous.report is None
                                     or previous.report.message != problem):
            decision.event("Warning", "PlanReportUnavailable",
                           f"the complete plan report of plan {plan_hash[:12]} is unavailable ({lint_total} lint "
                           f"findings, {len(lint)} of them in status): {problem}; `dbops migrate plan --output FILE` "
                           "writes it")
    lines = [_item(plan_report.finding_line(item)) for item in lint]
    return MigrationPlan(
        hash=plan_hash,
        pending=plan_report.capped([str(v) for v in pending], len(pending) if pending_total is None else pending_total,
                                   STATUS_PENDING_LIMIT, pending_where),
        lint=plan_report.capped(lines, len(lines) if lint_total is None else lint_total, STATUS_LINT_LIMIT,
                                lint_where),
        destructive=bool(result_plan.get("destructive")),
        report=ref,
    )
