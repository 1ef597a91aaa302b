"""DatabaseBackupSchedule: recurring backups through a CronJob, with retention."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from dbops.api.backup import DatabaseBackupSpec
from dbops.api.base import ApiModel
from dbops.api.common import Duration
from dbops.api.cron import CronSchedule
from dbops.api.kubevalues import AnnotationMap, LabelMap, TimeZone
from dbops.api.status import ResourceStatus


class RetentionPolicy(ApiModel):
    """Which backups to keep; the rest are pruned (their artifacts per deletionPolicy)."""

    keep_last: Annotated[int, Field(ge=0, le=10000)] | None = None
    """Keep the N most recent successful backups."""
    keep_daily: Annotated[int, Field(ge=0, le=10000)] | None = None
    """Keep the newest backup of each of the last N days that have one."""
    keep_weekly: Annotated[int, Field(ge=0, le=10000)] | None = None
    """Keep the newest backup of each of the last N ISO weeks that have one."""
    keep_monthly: Annotated[int, Field(ge=0, le=10000)] | None = None
    """Keep the newest backup of each of the last N months that have one."""
    max_age: Duration | None = None
    """Prune backups older than this (e.g. 30d), whatever the keep rules say."""


class BackupTemplateMetadata(ApiModel):
    """Labels and annotations for the backups a schedule creates."""

    labels: LabelMap | None = None
    """Labels."""
    annotations: AnnotationMap | None = None
    """Annotations."""


class ScheduledBackupSpec(DatabaseBackupSpec):
    """The spec of scheduled backups: retention owns them, so their artifacts go with them by default."""

    deletion_policy: Literal["Delete", "Retain"] = "Delete"
    """What happens to stored artifacts when retention prunes a backup: Delete (the default here) or Retain."""


class BackupTemplate(ApiModel):
    """The DatabaseBackup a schedule creates each time."""

    metadata: BackupTemplateMetadata | None = None
    """Metadata of the created backups."""
    spec: ScheduledBackupSpec
    """Spec of the created backups."""


class DatabaseBackupScheduleSpec(ApiModel):
    """The desired schedule."""

    schedule: CronSchedule
    """Cron expression, e.g. "0 2 * * *" (the runbook's daily 02:00 backup)."""
    time_zone: TimeZone = "UTC"
    """IANA time zone of the schedule."""
    suspend: bool = False
    """Stop creating backups."""
    starting_deadline_seconds: Annotated[int, Field(ge=10)] | None = 3600
    """How late a missed run may still start."""
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = "Forbid"
    """What to do when a run is still going."""
    successful_jobs_history_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Finished trigger Jobs kept."""
    failed_jobs_history_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Failed trigger Jobs kept."""
    backup_template: BackupTemplate
    """The backup to create."""
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    """Which backups to keep."""


class BackupReference(ApiModel):
    """A backup created by the schedule."""

    name: str
    """Name of the DatabaseBackup."""
    phase: str | None = None
    """Its phase."""
    completed_at: datetime | None = None
    """When it completed."""


class StartFailure(ApiModel):
    """A scheduled run whose pod could not start (its image, its env), shown in Ready until a later run succeeded."""

    job_name: str
    """The run's Job (the operator deleted it after the start grace)."""
    reason: str
    """ImagePullFailed or ContainerConfigError."""
    message: str
    """The container, its image and the kubelet's message."""
    created_at: datetime
    """When the CronJob created the Job."""
    recovered_at: datetime | None = None
    """When the schedule saw a later run succeed (Ready no longer shows this failure)."""


SchedulePhase = Literal["Pending", "Active", "Suspended", "Failed"]


class DatabaseBackupScheduleStatus(ResourceStatus[SchedulePhase]):
    """Observed state of a DatabaseBackupSchedule."""

    phase: SchedulePhase = "Pending"
    """Pending, Active, Suspended or Failed."""
    cron_job_name: str | None = None
    """The owned CronJob."""
    last_schedule_time: datetime | None = None
    """When the CronJob last fired."""
    last_backup: BackupReference | None = None
    """The most recent backup."""
    last_successful_backup: BackupReference | None = None
    """The most recent successful backup."""
    retained_backups: int = 0
    """Backups kept by retention."""
    pruned_backups: int = 0
    """Backups pruned by retention so far."""
    last_start_failure: StartFailure | None = None
    """The latest scheduled run whose pod could not start (recoveredAt set once a later run succeeded)."""
