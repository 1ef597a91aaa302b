"""Give memory back after bursts of events: collect cyclic garbage often, then trim glibc's heaps.

Kopf wraps every event's object in a ``Body`` whose ``Meta`` view points back at it: a reference cycle, so the
decoded object (a Job is ~30 KiB of dicts) is freed only by the cyclic garbage collector. A body still being
handled when a young collection runs is promoted, and the oldest generation is collected only after it grew by a
quarter: during a burst (1,000 new resources) bodies pile up by the hundred, and pymalloc's arenas keep the
high-water mark (bench/README.md, P7). A full collection every few seconds bounds that pile; ``malloc_trim(0)``
then returns the free pages inside glibc's heaps (glibc only returns a heap's top by itself; a no-op on a C
library without malloc_trim).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("dbops.controller")
INTERVAL_SECONDS = 5.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_TRIM = _malloc_trim()
_started = threading.Event()
STATS = {"runs": 0, "skipped": 0, "cpu_seconds": 0.0, "max_cpu_seconds": 0.0}
"""What the periodic collections cost (read by bench/traced_operator.py)."""


def collect_and_trim() -> float:
    """Collect cyclic garbage and release free heap pages now; the CPU seconds it took."""
    started = time.thread_time()
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
    return time.thread_time() - started


def start(interval: float = INTERVAL_SECONDS) -> None:
    """Collect and trim every ``interval`` seconds on a daemon thread (once per process).

    The objects alive at start-up (modules, Kopf's registry) are frozen out of the collector first, so each
    full collection only walks what the resources brought.
    """
    if _started.is_set():
        return
    _started.set()
    gc.collect()
    gc.freeze()

    def loop() -> None:
        stop = threading.Event()
        young = gc.get_stats()[1]["collections"]
        while not stop.wait(interval):
            # Only after work: a quiet operator (no new collections of the middle generation) is left alone.
            before, young = young, gc.get_stats()[1]["collections"]
            if young == before:
                STATS["skipped"] += 1
                continue
            took = collect_and_trim()
            STATS["runs"] += 1
            STATS["cpu_seconds"] += took
            STATS["max_cpu_seconds"] = max(STATS["max_cpu_seconds"], took)
            if took > 1.0:
                logger.info("garbage collection and heap trim took %.1fs of CPU", took)

    threading.Thread(target=loop, name="dbops-memory-trim", daemon=True).start()
