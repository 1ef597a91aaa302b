"""Delayed re-reconciles (Decision.requeue_after, re-checks): one timer thread, at most one wake-up per resource.

Kopf wakes a resource on events; a decision that waits for something that sends no event (a maintenance window,
a previous run) asks to be looked at again after a delay, and every unfinished resource is re-checked now and
then (driver.recheck_later). The wake-up is kept in memory: after a restart Kopf's resume handler reconciles
every resource anyway.

A resource has at most one wake-up pending, whether it waits in the heap or for a free worker: a due wake-up
leaves the heap only when a worker is free to run it, so when the reconciles fall behind (5,000 resources
re-checked every minute, bench/README.md, P8) the backlog stays one entry per resource instead of piling up.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger("dbops.controller")
Key = tuple[str, str, str]
Callback = Callable[[str, str, str], None]
RECHECKS_PER_SECOND = 10.0
"""At most this many re-checks a second on average: with more unfinished resources than ``recheck_seconds`` ×
this, their re-checks are spread out instead (5,000 running backups: every 500 s rather than 83 a second)."""


class Requeue:
    """Wake-ups due at monotonic times; the earliest request per resource wins."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._rechecks: set[Key] = set()
        """Keys whose pending wake-up is a re-check (counted to spread them)."""
        self._handed: set[Key] = set()
        """Keys handed to a worker that has not started their reconcile yet."""
        self._callback: Callback | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.Semaphore(1)

    def start(self, callback: Callback, workers: int = 4) -> None:
        """Run ``callback(kind, namespace, name)`` for each wake-up, on at most ``workers`` threads."""
        with self._condition:
            self._callback = callback
            if self._thread is None:
                self._slots = threading.Semaphore(workers)
                self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dbops-requeue-wake")
                self._thread = threading.Thread(target=self._loop, name="dbops-requeue", daemon=True)
                self._thread.start()

    def after(self, key: Key, seconds: float) -> None:
        """Reconcile the resource again in ``seconds`` (unless an earlier wake-up is already due)."""
        self._arm(key, seconds, recheck=False)

    def recheck(self, key: Key, seconds: float) -> None:
        """Re-check an unfinished resource in ``seconds``, or later when so many are pending that re-checks
        would exceed RECHECKS_PER_SECOND."""
        self._arm(key, seconds, recheck=True)

    def _arm(self, key: Key, seconds: float, *, recheck: bool) -> None:
        with self._condition:
            if key in self._handed:
                return  # its reconcile is about to run (and arms what it needs then)
            if recheck:
                seconds = max(seconds, len(self._rechecks) / RECHECKS_PER_SECOND)
            due = time.monotonic() + max(0.0, seconds)
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            if recheck:
                self._rechecks.add(key)
            else:
                self._rechecks.discard(key)
            heapq.heappush(self._heap, (due, key))
            self._condition.notify()

    def forget(self, key: Key) -> None:
        """Drop a pending wake-up (the resource is gone)."""
        with self._condition:
            self._due.pop(key, None)
            self._rechecks.discard(key)

    def pending(self, key: Key) -> float | None:
        """Seconds until the resource's wake-up, if one is pending (0 once handed to a worker)."""
        with self._condition:
            due = self._due.get(key)
            handed = key in self._handed
        if handed:
            return 0.0
        return None if due is None else max(0.0, due - time.monotonic())

    def size(self) -> int:
        """How many resources have a wake-up pending (in the heap or handed to a worker)."""
        with self._condition:
            return len(self._due) + len(self._handed)

    def _next(self) -> Key:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded or forgotten
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._rechecks.discard(key)
                    self._handed.add(key)
                    return key
                self._condition.wait(timeout=(self._heap[0][0] - now) if self._heap else None)

    def _loop(self) -> None:
        while True:
            self._slots.acquire()  # a due wake-up waits in the heap (one per resource) until a worker is free
            key = self._next()
            callback, pool = self._callback, self._pool
            if callback is not None and pool is not None:
                pool.submit(self._wake, callback, key)
            else:
                self._started(key)

    def _started(self, key: Key) -> None:
        with self._condition:
            self._handed.discard(key)
        self._slots.release()

    def _wake(self, callback: Callback, key: Key) -> None:
        with self._condition:
            self._handed.discard(key)
        try:
            callback(*key)
        except Exception as error:  # a retry of its own was scheduled or reported by the callback
            logger.info("requeued reconcile of %s %s/%s: %s", key[0], key[1], key[2], error)
        finally:
            self._slots.release()


REQUEUE = Requeue()
