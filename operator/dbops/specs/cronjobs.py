"""Pure builder of the CronJob whose pod runs ``dbops trigger backup`` for a schedule."""

from __future__ import annotations

from typing import Any

from dbops.api.roles import JobRole
from dbops.api.schedule import DatabaseBackupScheduleSpec
from dbops.specs import jobs, naming, rbac
from dbops.specs.owner import Owner

CRONJOB_NAME_LENGTH = 52
"""CronJob names leave 11 characters for the Jobs the CronJob controller names after them."""
TRIGGER_DEADLINE_SECONDS = 300

Manifest = dict[str, Any]


def cron_job_name(owner: Owner) -> str:
    """The deterministic name of a schedule's CronJob."""
    return naming.child_name(owner.name, "cron", max_length=CRONJOB_NAME_LENGTH)


def build_trigger_cron_job(owner: Owner, spec: DatabaseBackupScheduleSpec, *, image: str) -> Manifest:
    """The CronJob that creates one DatabaseBackup per scheduled time."""
    # the pod's namespace and name (build_job's pod identity env): where to create the backup, and its time
    work = jobs.RunnerWork(role=JobRole.TRIGGER, args=["trigger", "backup", "--schedule", owner.name])
    template = spec.backup_template.spec.job_template
    if template is not None:
        template = template.model_copy(update={"active_deadline_seconds": TRIGGER_DEADLINE_SECONDS,
                                               "backoff_limit": 2, "ttl_seconds_after_finished": None})
    job = jobs.build_job(owner, work, name="", image=image, template=template, owned=False)
    pod_spec = job["spec"]["template"]["spec"]
    pod_spec["serviceAccountName"] = rbac.trigger_account_name(owner)
    pod_spec["automountServiceAccountToken"] = True
    job_spec = job["spec"]
    job_spec.pop("podFailurePolicy", None)
    job_spec["backoffLimit"] = 2
    job_spec["activeDeadlineSeconds"] = TRIGGER_DEADLINE_SECONDS
    cron_spec: Manifest = {
        "schedule": spec.schedule,
        "timeZone": spec.time_zone,
        "suspend": spec.suspend,
        "concurrencyPolicy": spec.concurrency_policy,
        "successfulJobsHistoryLimit": spec.successful_jobs_history_limit,
        "failedJobsHistoryLimit": spec.failed_jobs_history_limit,
        "jobTemplate": {"metadata": {"labels": owner.labels(JobRole.TRIGGER)}, "spec": job_spec},
    }
    if spec.starting_deadline_seconds is not None:
        cron_spec["startingDeadlineSeconds"] = spec.starting_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cron_job_name(owner), "namespace": owner.namespace,
            "labels": owner.labels(JobRole.TRIGGER), "ownerReferences": [owner.owner_reference()],
        },
        "spec": cron_spec,
    }
