"""Prometheus metrics: backup freshness, size and duration, outcomes, resource phases and reconcile metrics.

Labels are bounded: namespace, kind, result, reason class, database and schedule names (as many as exist), and
resource names only on dbops_resource_phase (one series per live resource, like kube-state-metrics).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from dbops.api.backup import DatabaseBackupStatus
from dbops.api.schedule import DatabaseBackupScheduleStatus
from dbops.api.status import TERMINAL_PHASES, ResourceStatus
from dbops.controller import locks

SCHEDULE_LABEL = "dbops.io/schedule"
UNKNOWN_DATABASE = "unknown"
# Terminal reasons that mean a check of data found a problem (not that a Job could not run).
FAILED_PHASES = frozenset({"Failed", "RolledBack"})
RESULTS = ("Succeeded", "Failed", "RolledBack")
VERIFICATION_REASONS = frozenset({"VerificationFailed", "ChecksumMismatch", "DecodeFailed"})

RESOURCE_LOCKS = Gauge("dbops_operator_resource_locks",
                       "Per-resource locks the operator holds: one per resource seen, dropped when it is deleted")
RESOURCE_LOCKS.set_function(locks.count)
RECONCILE_TOTAL = Counter("controller_runtime_reconcile_total", "Reconciliations per controller and result",
                          ["controller", "result"])
RECONCILE_ERRORS = Counter("controller_runtime_reconcile_errors_total", "Reconciliation errors per controller",
                           ["controller"])
RECONCILE_TIME = Histogram("controller_runtime_reconcile_time_seconds", "Time per reconciliation", ["controller"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
BACKUP_LAST_SUCCESS = Gauge(
    "dbops_backup_last_success_timestamp_seconds",
    "Completion time (Unix seconds) of the newest successful backup per schedule (\"\" for ad hoc) and database",
    ["namespace", "schedule", "database"])
BACKUP_SIZE = Gauge("dbops_backup_size_bytes", "Stored size of the newest successful backup",
                    ["namespace", "schedule", "database"])
BACKUP_LAST_DURATION = Gauge("dbops_backup_last_duration_seconds", "Wall time of the newest successful backup",
                             ["namespace", "schedule", "database"])
BACKUP_DURATION = Histogram("dbops_backup_duration_seconds", "Wall time of finished backups", ["namespace", "result"],
                            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600))
OUTCOMES = Counter("dbops_outcomes_total", "Finished backups, migrations and restores per kind and phase "
                   "(Succeeded, Failed, RolledBack)", ["kind", "namespace", "result"])
VERIFICATION_FAILURES = Counter(
    "dbops_verification_failures_total",
    "Backups, migrations and restores that ended because a verification or check failed", ["kind", "namespace"])
SCHEDULE_LAST_SUCCESS = Gauge(
    "dbops_schedule_last_success_timestamp_seconds",
    "Completion time (Unix seconds) of the schedule's newest successful backup, from its status",
    ["namespace", "schedule"])
SCHEDULE_LAST_FAILED = Gauge("dbops_schedule_last_backup_failed",
                             "1 when the schedule's most recent backup failed or its latest run could not start, "
                             "else 0", ["namespace", "schedule"])
JOBS_CREATED = Counter("dbops_jobs_created_total", "Jobs created (not adopted)", ["kind", "role"])
JOBS_ADOPTED = Counter("dbops_jobs_adopted_total", "Jobs that already existed and were adopted", ["kind", "role"])


class PhaseCollector(Collector):
    """Resources per kind and phase, from the phases the operator last wrote or read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    def record(self, kind: str, namespace: str, name: str, phase: str | None, *, reason: str = "",
               schedule: str = "") -> None:
        """Remember the phase (with the Ready reason and the creating schedule) of one resource; None forgets it."""
        with self._lock:
            if phase is None:
                self._phases.pop((kind, namespace, name), None)
            else:
                self._phases[(kind, namespace, name)] = (phase, reason, schedule)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The dbops_resources, dbops_resource_phase and dbops_resource_failed gauges."""
        with self._lock:
            phases = dict(self._phases)
        totals = GaugeMetricFamily("dbops_resources", "dbops resources per kind and phase", labels=["kind", "phase"])
        for (kind, phase), count in sorted(Tally((k, p[0]) for (k, _, _), p in phases.items()).items()):
            totals.add_metric([kind, phase], count)
        yield totals
        each = GaugeMetricFamily("dbops_resource_phase", "1 for each dbops resource, labelled with its current phase",
                                 labels=["kind", "namespace", "name", "phase"])
        failed = GaugeMetricFamily(
            "dbops_resource_failed", "1 for each dbops resource that ended Failed or RolledBack, with the reason of "
            "its Ready condition and the schedule that created it (\"\" if none)",
            labels=["kind", "namespace", "name", "reason", "schedule"])
        for (kind, namespace, name), (phase, reason, schedule) in sorted(phases.items()):
            each.add_metric([kind, namespace, name, phase], 1)
            if phase in FAILED_PHASES:
                failed.add_metric([kind, namespace, name, reason, schedule], 1)
        yield each
        yield failed


PHASES = PhaseCollector()
REGISTRY.register(PHASES)
_newest_lock = threading.Lock()
_newest: dict[tuple[str, str, str], float] = {}


def backup_labels(body: Mapping[str, Any], status: DatabaseBackupStatus) -> tuple[str, str, str]:
    """(namespace, schedule, database): the database the runner dumped (a uriSecretRef hides it from the spec),
    else the spec's database name."""
    metadata = body["metadata"]
    schedule = str((metadata.get("labels") or {}).get(SCHEDULE_LABEL, ""))
    spec_database = ((body.get("spec") or {}).get("database") or {}).get("name")
    database = (status.source.database if status.source else "") or spec_database or UNKNOWN_DATABASE
    return str(metadata["namespace"]), schedule, str(database)


def record_backup(body: Mapping[str, Any], status: DatabaseBackupStatus) -> None:
    """Freshness, size and duration of a successful backup, unless a newer one is already recorded (idempotent,
    so that a restarted operator rebuilds them from the backups it reads)."""
    if status.phase != "Succeeded" or status.completed_at is None:
        return
    labels = backup_labels(body, status)
    completed = status.completed_at.timestamp()
    with _newest_lock:
        if _newest.get(labels, 0.0) > completed:
            return
        _newest[labels] = completed
        BACKUP_LAST_SUCCESS.labels(*labels).set(completed)
        if status.artifact is not None:
            BACKUP_SIZE.labels(*labels).set(status.artifact.size_bytes)
        if status.duration_seconds is not None:
            BACKUP_LAST_DURATION.labels(*labels).set(status.duration_seconds)


def record_schedule(namespace: str, name: str, status: DatabaseBackupScheduleStatus) -> None:
    """The schedule's phase, newest success and whether its latest backup failed or its latest run could not
    start (from its status: a run that never starts makes no backup to fail, and must not wait for staleness)."""
    PHASES.record("DatabaseBackupSchedule", namespace, name, status.phase)
    success = status.last_successful_backup
    if success is not None and success.completed_at is not None:
        SCHEDULE_LAST_SUCCESS.labels(namespace, name).set(success.completed_at.timestamp())
    stuck = status.last_start_failure is not None and status.last_start_failure.recovered_at is None
    failed = stuck or (status.last_backup is not None and status.last_backup.phase == "Failed")
    SCHEDULE_LAST_FAILED.labels(namespace, name).set(1 if failed else 0)


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop a deleted resource's series (a deleted schedule no longer raises staleness alerts)."""
    PHASES.record(kind, namespace, name, None)
    if kind == "DatabaseBackupSchedule":
        for gauge in (SCHEDULE_LAST_SUCCESS, SCHEDULE_LAST_FAILED):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)


def record_status(body: Mapping[str, Any], status: ResourceStatus[Any]) -> None:
    """The phase of a resource as read or written (rebuilds dbops_resource_* after a restart)."""
    metadata = body["metadata"]
    ready = status.condition("Ready")
    PHASES.record(str(body["kind"]), str(metadata["namespace"]), str(metadata["name"]), status.phase,
                  reason=ready.reason if ready is not None else "",
                  schedule=str((metadata.get("labels") or {}).get(SCHEDULE_LABEL, "")))


def record_transition(body: Mapping[str, Any], after: ResourceStatus[Any]) -> None:
    """The phase of a resource, and its outcome when this write made it terminal."""
    record_status(body, after)
    kind, namespace = str(body["kind"]), str(body["metadata"]["namespace"])
    # Children at 0 before the first outcome, so that increase() sees the first failure too.
    for result in RESULTS:
        OUTCOMES.labels(kind, namespace, result)
    VERIFICATION_FAILURES.labels(kind, namespace)
    if after.phase not in TERMINAL_PHASES or (body.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return
    OUTCOMES.labels(kind, namespace, after.phase).inc()
    ready = after.condition("Ready")
    if after.phase != "Succeeded" and ready is not None and ready.reason in VERIFICATION_REASONS:
        VERIFICATION_FAILURES.labels(kind, namespace).inc()
    if kind == "DatabaseBackup" and after.duration_seconds is not None:
        BACKUP_DURATION.labels(namespace, after.phase).observe(after.duration_seconds)


@contextmanager
def reconcile_timer(controller: str) -> Iterator[None]:
    """Count and time one reconciliation, labelling errors."""
    started = time.monotonic()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(controller).inc()
        RECONCILE_TOTAL.labels(controller, "error").inc()
        raise
    else:
        RECONCILE_TOTAL.labels(controller, "success").inc()
    finally:
        RECONCILE_TIME.labels(controller).observe(time.monotonic() - started)


def serve(port: int) -> None:
    """Serve /metrics on a port (in a background thread)."""
    if port:
        start_http_server(port)
