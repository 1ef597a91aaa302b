"""Delayed re-reconciles (Decision.requeue_after): one timer thread, at most one pending wake-up per resource.

Kopf wakes a resource on events and (optionally) on the re-check timer; a decision that waits for something
that sends no event (a maintenance window, a previous run) asks to be looked at again after a delay. The
wake-up is kept in memory: after a restart Kopf's resume handler reconciles every resource anyway.
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


class Requeue:
    """Wake-ups due at monotonic times; the earliest request per resource wins."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._callback: Callback | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self, callback: Callback, workers: int = 4) -> None:
        """Run ``callback(kind, namespace, name)`` for each wake-up, on at most ``workers`` threads."""
        with self._condition:
            self._callback = callback
            if self._thread is None:
                self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dbops-requeue-wake")
                self._thread = threading.Thread(target=self._loop, name="dbops-requeue", daemon=True)
                self._thread.start()

    def after(self, key: Key, seconds: float) -> None:
        """Reconcile the resource again in ``seconds`` (unless an earlier wake-up is already due)."""
        due = time.monotonic() + max(0.0, seconds)
        with self._condition:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            self._condition.notify()

    def forget(self, key: Key) -> None:
        """Drop a pending wake-up (the resource is gone)."""
        with self._condition:
            self._due.pop(key, None)

    def pending(self, key: Key) -> float | None:
        """Seconds until the resource's wake-up, if one is pending."""
        with self._condition:
            due = self._due.get(key)
        return None if due is None else max(0.0, due - time.monotonic())

    def _next(self) -> Key:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded or forgotten
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._condition.wait(timeout=(self._heap[0][0] - now) if self._heap else None)

    def _loop(self) -> None:
        while True:
            key = self._next()
            callback, pool = self._callback, self._pool
            if callback is not None and pool is not None:
                pool.submit(self._wake, callback, key)  # bounded: a burst of wake-ups queues, it spawns no threads

    @staticmethod
    def _wake(callback: Callback, key: Key) -> None:
        try:
            callback(*key)
        except Exception as error:  # a retry of its own was scheduled or reported by the callback
            logger.info("requeued reconcile of %s %s/%s: %s", key[0], key[1], key[2], error)


REQUEUE = Requeue()
