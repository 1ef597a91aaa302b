"""The running Jobs dbops made, as Kopf's Job watch last showed them: a re-check or restart reads no Job again.

Only a *running* Job is answered from here, and only as a slim body (its name, our label and how many pods are
ready): that is all a running Job's outcome depends on. Anything else is read from the API server as before —
a Job the cache does not hold (so "missing" is never believed without a GET: a Job created a moment ago, or
before a restart, whose event has not arrived, must not read as lost), a finished Job (its outcome needs the full
Job and its pods), an entry older than MAX_AGE_SECONDS (a deletion the watch missed when it re-listed after
410 Gone would otherwise keep a lost Job "running" forever). A stale "running" answer only delays what the Job's
finished event brings: its event refreshes the entry before its reconcile runs (handlers.job_event). A
duplicate Job cannot come from here: creation still needs a GET answering 404, and a create that finds the Job
adopts it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from dbops.reconcile.jobs import job_state
from dbops.specs.owner import MANAGED_BY, MANAGER

MAX_AGE_SECONDS = 300.0
Key = tuple[str, str]


class JobCache:
    """(namespace, name) → (ready pods, monotonic time of the last word about the Job)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running: dict[Key, tuple[int, float]] = {}

    def seen(self, job: Mapping[str, Any], *, deleted: bool = False) -> None:
        """A Job as an event, a GET or a create showed it (ours: the caller checked the dbops label)."""
        metadata = job.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        with self._guard:
            if deleted or metadata.get("deletionTimestamp") or job_state(job) != "Running":
                self._running.pop(key, None)
            else:
                self._running[key] = (int((job.get("status") or {}).get("ready") or 0), time.monotonic())

    def gone(self, namespace: str, name: str) -> None:
        """The Job does not exist (a GET answered 404, or dbops deleted it)."""
        with self._guard:
            self._running.pop((namespace, name), None)

    def running(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A slim body of the Job when it is known to be running (recently enough), else None: read it."""
        with self._guard:
            entry = self._running.get((namespace, name))
        if entry is None or time.monotonic() - entry[1] > MAX_AGE_SECONDS:
            return None
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"namespace": namespace, "name": name, "labels": {MANAGED_BY: MANAGER}},
                "status": {"ready": entry[0]}}

    def __len__(self) -> int:
        with self._guard:
            return len(self._running)


JOBS = JobCache()
