"""DatabaseMigration command-mode plan in the controller: observe the plan Jobs, read their logs, build the Jobs."""

from __future__ import annotations

from typing import Any

from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.controller import driver
from dbops.kube import pod_logs
from dbops.reconcile import command_plan
from dbops.reconcile.actions import JobRequest
from dbops.reconcile.command_plan_steps import CommandPlanObserved, plan_command, plan_outcome
from dbops.reconcile.jobs import JobOutcome
from dbops.redaction import redact
from dbops.specs import command_plan as plan_specs
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner


def observe(owner: Owner, spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus,
            revision: str, run: str) -> CommandPlanObserved | None:
    """The plan and confirm Jobs of this run (``run``: the revision and attempt, dbops.reconcile.retry.run_key);
    a log is read only while status does not hold its result."""
    if plan_command(spec) is None:
        return None
    plan_name, confirm_name = plan_specs.plan_job_names(owner, run)
    plan = status.plan if status.source_hash == revision else None
    report = plan.command if plan is not None else None
    if report is None:
        job, log = _read(owner, plan_name, revision)
        return CommandPlanObserved(plan_name, confirm_name, plan=job, plan_log=log)
    if spec.approval.mode == "Manual" and not report.confirmed:
        job, log = _read(owner, confirm_name, revision)
        return CommandPlanObserved(plan_name, confirm_name, confirm=job, confirm_log=log)
    return CommandPlanObserved(plan_name, confirm_name)


def _read(owner: Owner, name: str, revision: str) -> tuple[JobOutcome, command_plan.PlanLog | None]:
    outcome = driver.read_job(owner.namespace, name, plan_outcome)  # a pod that cannot start fails it (pod_start)
    if outcome.state != "Succeeded":
        return outcome, None
    raw = pod_logs.read_job_pod_log(owner.namespace, name, container=job_specs.CONTAINER_NAME,
                                    limit_bytes=command_plan.MAX_OUTPUT_BYTES + 1)
    if raw is None:
        return outcome, command_plan.PlanLog(None)
    data = raw.encode()
    truncated = len(data) > command_plan.MAX_OUTPUT_BYTES
    if truncated:
        raw = data[:command_plan.MAX_OUTPUT_BYTES].decode(errors="ignore")
    text = redact(raw)
    # Named by the revision and the plan (not the attempt): a retry with the same plan finds its text again.
    manifest = plan_specs.build_config_map(owner, text, revision=revision, sha256=command_plan.output_hash(text),
                                           plan_hash=command_plan.plan_hash(revision, text))
    return outcome, command_plan.PlanLog(text, truncated, manifest)


def build_job(owner: Owner, spec: DatabaseMigrationSpec, request: JobRequest) -> dict[str, Any]:
    """The plan (or confirm) Job for a request of the reconcile."""
    argv = plan_command(spec)
    if argv is None:
        raise ValueError(f"plan Job {request.name} asked for, but the spec has no plan command")
    return plan_specs.build_plan_job(owner, spec, name=request.name, argv=argv)
