"""The ConfigMap `<migration>-plan` holding a migration's complete plan report (owned: deleted with it)."""

from __future__ import annotations

from typing import Any

from dbops.api import plan_report
from dbops.specs import naming
from dbops.specs.owner import Owner

ROLE = "plan-report"
REVISION_ANNOTATION = "dbops.io/revision"
PLAN_HASH_ANNOTATION = "dbops.io/plan-hash"
SHA256_ANNOTATION = "dbops.io/report-sha256"


def config_map_name(owner: Owner) -> str:
    """`<migration name>-plan` (cut with a hash suffix only past the 253-character name limit)."""
    return naming.truncated_name(owner.name, "plan", max_length=253)


def report_data(report: plan_report.FramedReport) -> dict[str, str] | None:
    """The ConfigMap data for a report: the report, its findings as text (a note instead when both do not fit,
    the report staying complete) and the plan hash; None when even the report alone is more than a ConfigMap
    holds."""
    plan = plan_report.plan_of(report.document)
    data = {plan_report.REPORT_KEY: report.data, plan_report.PLAN_HASH_KEY: str(plan.get("hash") or "")}
    if len(report.data.encode()) > plan_report.CONFIG_MAP_ROOM:
        return None
    text = plan_report.findings_text(report.document)
    if len(report.data.encode()) + len(text.encode()) > plan_report.CONFIG_MAP_ROOM:
        # Always written: an update (a merge patch) would otherwise keep an older revision's text.
        text = f"the findings text did not fit beside the report: read them from {plan_report.REPORT_KEY} (.plan.lint)\n"
    data[plan_report.FINDINGS_KEY] = text
    return data


def build_config_map(owner: Owner, report: plan_report.FramedReport, *, revision: str) -> dict[str, Any] | None:
    """The ConfigMap holding the report of this revision's plan, or None when it is too large for one."""
    data = report_data(report)
    if data is None:
        return None
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(owner), "namespace": owner.namespace, "labels": owner.labels(ROLE),
            "annotations": {REVISION_ANNOTATION: revision, PLAN_HASH_ANNOTATION: data[plan_report.PLAN_HASH_KEY],
                            SHA256_ANNOTATION: report.sha256},
            "ownerReferences": [owner.owner_reference()],
        },
        "data": data,
    }
