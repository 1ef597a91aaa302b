"""The plan ConfigMaps of a migration: one convention for the SQL plan report and command mode's plan output.

``<migration>-plan-<8 hex of (revision, plan hash)>``, owned by the migration (deleted with it), labelled
``dbops.io/role=plan``, annotated with the revision, the plan hash and the sha256 of its main key, holding the
plan hash under ``planHash``; the main key is ``report.json`` (with ``findings.txt``) for a SQL source and
``plan.txt`` for a command. ``immutable``: written once, so the text of a plan that was approved never changes
(a new plan is a new ConfigMap). status.plan.report points to it in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbops.api import plan_report
from dbops.specs import naming
from dbops.specs.owner import Owner

ROLE = "plan"
REVISION_ANNOTATION = "dbops.io/revision"
PLAN_HASH_ANNOTATION = "dbops.io/plan-hash"
SHA256_ANNOTATION = "dbops.io/report-sha256"
LEGACY_ROLE = "plan-report"
"""The SQL report's role label before the convention (its ConfigMap `<migration>-plan`, read only)."""


def config_map_name(owner: Owner, revision: str, plan_hash: str) -> str:
    """``<migration>-plan-<hash>``: one per revision and plan (cut only past the 253-character name limit)."""
    return naming.child_name(owner.name, "plan", revision, plan_hash, max_length=253)


def legacy_config_map_name(owner: Owner) -> str:
    """``<migration>-plan``, where the SQL report of a run that planned before the convention is (read only)."""
    return naming.truncated_name(owner.name, "plan", max_length=253)


def plan_config_map(owner: Owner, *, revision: str, plan_hash: str, sha256: str,
                    data: Mapping[str, str]) -> dict[str, Any]:
    """A plan ConfigMap of the convention, holding ``data`` and the plan hash."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(owner, revision, plan_hash), "namespace": owner.namespace,
            "labels": owner.labels(ROLE),
            "annotations": {REVISION_ANNOTATION: revision, PLAN_HASH_ANNOTATION: plan_hash, SHA256_ANNOTATION: sha256},
            "ownerReferences": [owner.owner_reference()],
        },
        "immutable": True,
        "data": {**data, plan_report.PLAN_HASH_KEY: plan_hash},
    }


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
        text = f"the findings text did not fit beside the report: read them from {plan_report.REPORT_KEY} (.plan.lint)\n"
    data[plan_report.FINDINGS_KEY] = text
    return data


def build_config_map(owner: Owner, report: plan_report.FramedReport, *, revision: str) -> dict[str, Any] | None:
    """The ConfigMap holding the report of this revision's plan, or None when it is too large for one."""
    data = report_data(report)
    if data is None:
        return None
    return plan_config_map(owner, revision=revision, plan_hash=data[plan_report.PLAN_HASH_KEY], sha256=report.sha256,
                           data=data)
