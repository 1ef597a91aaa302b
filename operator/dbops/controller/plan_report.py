"""Observing a migration's complete plan report: its plan ConfigMap, else the framed line in the plan Job's log."""

from __future__ import annotations

import logging
from typing import Any

from dbops.api import plan_report
from dbops.kube import objects, pod_logs
from dbops.kube import session as kube_session
from dbops.reconcile.jobs import JobOutcome
from dbops.reconcile.plan_report import PlanReportObserved
from dbops.specs import plan_report as plan_report_specs
from dbops.specs.owner import Owner

logger = logging.getLogger("dbops.controller")

LOG_LIMIT_BYTES = 4 * plan_report.CONFIG_MAP_LIMIT
"""The most of the plan Job's log read: a report too large for a ConfigMap is still found, and said to be."""


def observe(owner: Owner, revision: str, plan: JobOutcome, job_name: str) -> PlanReportObserved | None:
    """The plan's complete report once the plan Job finished with a plan (None before, or without one).

    The ConfigMap is read first; the log only when it does not hold this revision's plan yet. A log that
    cannot be read is a problem reported in status (and retried on the next reconcile), never an error that
    would stop the migration.
    """
    result_plan = plan.result.get("plan")
    if not plan.finished or not isinstance(result_plan, dict):
        return None
    plan_hash = str(result_plan.get("hash") or "")
    name = plan_report_specs.config_map_name(owner, revision, plan_hash)
    # A run that planned before the convention left its report in <migration>-plan: read there, not written again.
    for where in (name, plan_report_specs.legacy_config_map_name(owner)):
        stored = _stored(objects.get("ConfigMap", owner.namespace, where), revision, plan_hash)
        if stored is not None:
            return PlanReportObserved(where, report=stored)
    try:
        log = pod_logs.read_job_pod_log(owner.namespace, job_name, limit_bytes=LOG_LIMIT_BYTES)
    except kube_session.ApiError as error:
        if error.status == kube_session.FORBIDDEN:
            return PlanReportObserved(name, problem=f"the operator may not read the plan Job's log (pods/log): "
                                                    f"{error.detail}")
        logger.warning("reading the log of plan Job %s/%s failed: %s", owner.namespace, job_name, error)
        return PlanReportObserved(name, problem=f"the plan Job's log could not be read ({error}); trying again")
    if log is None:
        return PlanReportObserved(name, problem=f"the plan Job {job_name}'s pod or its log is gone")
    found = plan_report.find(log)
    if isinstance(found, str):
        if len(log.encode()) >= LOG_LIMIT_BYTES:
            found = f"{found}; the log is over {LOG_LIMIT_BYTES // (1024 * 1024)} MiB"
        return PlanReportObserved(name, problem=found)
    report_plan = plan_report.plan_of(found.document)
    if str(report_plan.get("hash") or "") != plan_hash:
        return PlanReportObserved(name, problem=f"the report in the plan Job's log is for plan "
                                                f"{str(report_plan.get('hash') or 'none')[:12]}, not {plan_hash[:12]}")
    manifest = plan_report_specs.build_config_map(owner, found, revision=revision)
    if manifest is None:
        size = len(found.data.encode())
        return PlanReportObserved(name, problem=f"the complete plan report ({size / (1024 * 1024):.1f} MiB) is more "
                                                f"than a ConfigMap holds ({plan_report.CONFIG_MAP_LIMIT // (1024 * 1024)}"
                                                " MiB)")
    return PlanReportObserved(name, report=found, manifest=manifest)


def _stored(config_map: dict[str, Any] | None, revision: str, plan_hash: str) -> plan_report.FramedReport | None:
    """The report a ConfigMap holds, when it is this revision's plan's and intact."""
    if config_map is None:
        return None
    annotations = (config_map.get("metadata") or {}).get("annotations") or {}
    if (annotations.get(plan_report_specs.REVISION_ANNOTATION) != revision
            or annotations.get(plan_report_specs.PLAN_HASH_ANNOTATION) != plan_hash):
        return None
    data = str((config_map.get("data") or {}).get(plan_report.REPORT_KEY) or "")
    digest = str(annotations.get(plan_report_specs.SHA256_ANNOTATION) or "")
    found = plan_report.find(f"{plan_report.FRAME_PREFIX}{digest} {data}")
    return found if isinstance(found, plan_report.FramedReport) else None
