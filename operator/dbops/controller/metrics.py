"""Prometheus metrics: backup outcomes, resource phases and controller-runtime style reconcile metrics."""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

RECONCILE_TOTAL = Counter("controller_runtime_reconcile_total", "Reconciliations per controller and result",
                          ["controller", "result"])
RECONCILE_ERRORS = Counter("controller_runtime_reconcile_errors_total", "Reconciliation errors per controller",
                           ["controller"])
RECONCILE_TIME = Histogram("controller_runtime_reconcile_time_seconds", "Time per reconciliation", ["controller"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
BACKUP_LAST_SUCCESS = Gauge("dbops_backup_last_success_timestamp_seconds",
                            "Completion time of the last successful backup", ["namespace", "database"])
BACKUP_DURATION = Histogram("dbops_backup_duration_seconds", "Wall time of finished backups", ["namespace", "result"],
                            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600))
BACKUP_SIZE = Gauge("dbops_backup_size_bytes", "Stored size of the last successful backup", ["namespace", "database"])
JOBS_CREATED = Counter("dbops_jobs_created_total", "Jobs created (not adopted)", ["kind", "role"])
JOBS_ADOPTED = Counter("dbops_jobs_adopted_total", "Jobs that already existed and were adopted", ["kind", "role"])


class PhaseCollector(Collector):
    """Counts of resources per kind and phase, from the phases the operator last wrote or read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str, str], str] = {}

    def record(self, kind: str, namespace: str, name: str, phase: str | None) -> None:
        """Remember the phase of one resource (None forgets it)."""
        with self._lock:
            if phase is None:
                self._phases.pop((kind, namespace, name), None)
            else:
                self._phases[(kind, namespace, name)] = phase

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The dbops_resources gauge."""
        family = GaugeMetricFamily("dbops_resources", "dbops resources per kind and phase", labels=["kind", "phase"])
        with self._lock:
            counts = Tally((kind, phase) for (kind, _, _), phase in self._phases.items())
        for (kind, phase), count in sorted(counts.items()):
            family.add_metric([kind, phase], count)
        yield family


PHASES = PhaseCollector()
REGISTRY.register(PHASES)


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
