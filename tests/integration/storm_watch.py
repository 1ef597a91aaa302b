"""Records every version of dbops resources and every Job a namespace sees, through real watches (edit-storm tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION


@dataclass
class Seen:
    """One watch event: the object as the API server sent it, in arrival order."""

    sequence: int
    type: str
    body: dict[str, Any]


@dataclass
class Recorder:
    """Watches the dbops kinds and Jobs of one namespace in threads until stopped."""

    kube_client: Any
    namespace: str
    kinds: tuple[str, ...]
    events: dict[str, list[Seen]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sequence: int = 0

    def start(self) -> None:
        """Start one watch per kind and one on Jobs."""
        custom = client.CustomObjectsApi(self.kube_client)
        batch = client.BatchV1Api(self.kube_client)
        for kind in self.kinds:
            self._spawn(kind, custom.list_namespaced_custom_object,
                        (GROUP, VERSION, self.namespace, harness.PLURALS[kind]))
        self._spawn("Job", batch.list_namespaced_job, (self.namespace,))

    def _spawn(self, key: str, lister: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.events[key] = []
        thread = threading.Thread(target=self._watch, args=(key, lister, args), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _watch(self, key: str, lister: Callable[..., Any], args: tuple[Any, ...]) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                stream: Iterator[dict[str, Any]] = watch.Watch().stream(
                    lister, *args, resource_version=version, timeout_seconds=5, allow_watch_bookmarks=False)
                for event in stream:
                    body = event["object"]
                    body = body if isinstance(body, dict) else self.kube_client.sanitize_for_serialization(body)
                    if event["type"] == "ERROR":
                        version = None  # 410 Gone: list again from now (nothing is skipped: the list is recorded)
                        break
                    version = body["metadata"]["resourceVersion"]
                    with self._lock:
                        self._sequence += 1
                        self.events[key].append(Seen(self._sequence, event["type"], body))
                    if self._stop.is_set():
                        break
            except Exception as error:  # a dropped watch resumes from the last version
                self.errors.append(f"{key}: {error!r}")

    def stop(self) -> None:
        """Stop the watches."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def of(self, kind: str, name: str) -> list[Seen]:
        """Every recorded version of one resource, in order."""
        with self._lock:
            return [seen for seen in self.events[kind] if seen.body["metadata"]["name"] == name]

    def jobs_of(self, name: str) -> dict[str, list[Seen]]:
        """Every Job recorded for an owner, by Job uid."""
        jobs: dict[str, list[Seen]] = {}
        with self._lock:
            for seen in self.events["Job"]:
                labels = seen.body["metadata"].get("labels") or {}
                if labels.get("dbops.io/name") == name:
                    jobs.setdefault(seen.body["metadata"]["uid"], []).append(seen)
        return jobs
