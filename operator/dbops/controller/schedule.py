"""DatabaseBackupSchedule: own the trigger CronJob and its RBAC, report backups and stuck runs, prune per retention."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dbops.api.schedule import DatabaseBackupScheduleSpec, DatabaseBackupScheduleStatus
from dbops.api.status import utcnow
from dbops.controller import driver, effects, metrics
from dbops.controller.config import CONFIG
from dbops.kube import jobs as kube_jobs
from dbops.kube import objects
from dbops.reconcile import schedule as schedule_reconcile
from dbops.reconcile.jobs import job_state
from dbops.reconcile.pod_start import start_problem
from dbops.specs import cronjobs, rbac

KIND = "DatabaseBackupSchedule"
SCHEDULE_LABEL = "dbops.io/schedule"


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def unfinished_runs(namespace: str, cron_job: Mapping[str, Any] | None) -> list[schedule_reconcile.ScheduledRun]:
    """The CronJob's active Jobs (its status.active: no request at all while none runs) and, for those whose pod
    is not ready, why it has not started (pod_start, read from the Job's pods)."""
    runs = []
    cron_uid = ((cron_job or {}).get("metadata") or {}).get("uid")
    for reference in ((cron_job or {}).get("status") or {}).get("active") or []:
        job = kube_jobs.get_job(namespace, str(reference.get("name")))
        metadata = (job or {}).get("metadata") or {}
        if (job is None or metadata.get("deletionTimestamp") or job_state(job) != "Running"
                or not any(ref.get("uid") == cron_uid for ref in metadata.get("ownerReferences") or [])):
            continue  # gone, being deleted, finished, or not the CronJob's own: nothing to report or delete
        name = str(metadata["name"])
        created = _time(metadata.get("creationTimestamp")) or utcnow()
        problem = None
        if not (job.get("status") or {}).get("ready"):
            problem = start_problem(name, kube_jobs.job_pods(namespace, name), now=datetime.now(UTC),
                                    grace=CONFIG.start_grace_seconds)
        runs.append(schedule_reconcile.ScheduledRun(name, created, problem))
    return runs


def reconcile(opened: driver.Opened[DatabaseBackupScheduleSpec, DatabaseBackupScheduleStatus]) -> None:
    """One reconcile of a DatabaseBackupSchedule (a Failed one tries again when its spec changed)."""
    body, owner, spec, status = opened.body, opened.owner, opened.spec, opened.status
    cron_name = cronjobs.cron_job_name(owner)
    cron_job = objects.get("CronJob", owner.namespace, cron_name)
    backups = [
        schedule_reconcile.ScheduledBackup(
            name=item["metadata"]["name"],
            phase=str((item.get("status") or {}).get("phase") or "Pending"),
            created_at=_time(item["metadata"].get("creationTimestamp")) or utcnow(),
            completed_at=_time((item.get("status") or {}).get("completedAt")),
        )
        for item in objects.list_objects("DatabaseBackup", owner.namespace,
                                         label_selector=f"{SCHEDULE_LABEL}={owner.name}")
        if not item["metadata"].get("deletionTimestamp")
    ]
    cron_status = (cron_job or {}).get("status") or {}
    decision = schedule_reconcile.reconcile_schedule(
        spec, status, backups, cron_job_name=cron_name, last_schedule_time=_time(cron_status.get("lastScheduleTime")),
        generation=owner.generation, now=utcnow(), runs=unfinished_runs(owner.namespace, cron_job),
        last_successful_time=_time(cron_status.get("lastSuccessfulTime")))
    if not decision.status.is_terminal and (cron_job is None or status.observed_generation != owner.generation):
        decision.apply[:0] = [*rbac.trigger_manifests(owner, CONFIG.trigger_cluster_role),
                              cronjobs.build_trigger_cron_job(owner, spec, image=CONFIG.image)]
    effects.carry_out(owner, decision)
    driver.write_status(owner, body, decision)
    assert isinstance(decision.status, DatabaseBackupScheduleStatus)
    metrics.record_schedule(owner.namespace, owner.name, decision.status)


CONTROLLER = driver.Controller(KIND, DatabaseBackupScheduleSpec, DatabaseBackupScheduleStatus, reconcile,
                               done_when_terminal=False)
