"""`dbops operator` under tracemalloc: SIGUSR1 dumps a heap snapshot and a census to $DBOPS_TRACEMALLOC_DIR/<n>.*.

The census (<n>.census.json) counts what is alive: gc objects by type, Kopf's per-resource memories and the
bodies its daemons and timers keep, asyncio tasks, threads, aiohttp connections, dbops' own per-resource tables,
and glibc's arena figures (mallinfo2).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

from dbops.cli.main import main

_count = 0
MIB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo() -> dict[str, float]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"arena_mib": info.arena / MIB, "mmap_mib": info.hblkhd / MIB, "in_use_mib": info.uordblks / MIB,
            "free_in_arenas_mib": info.fordblks / MIB, "top_releasable_mib": info.keepcost / MIB}


def _pymalloc() -> dict[str, float]:
    """pymalloc's arenas (1 MiB each, outside glibc's figures) and the bytes of its blocks in use."""
    import tempfile

    with tempfile.TemporaryFile("w+") as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read()
    figures: dict[str, float] = {}
    for line in text.splitlines():
        label, _, value = line.rpartition("=")
        label = label.strip().lstrip("#").strip()
        if label in ("arenas allocated current", "arenas highwater mark"):
            figures[label.replace(" ", "_")] = float(value.replace(",", ""))
        elif label in ("bytes in allocated blocks", "bytes in available blocks"):
            figures[label.split()[2] + "_blocks_mib"] = float(value.replace(",", "")) / MIB
        elif label == "Total" and "arenas_total_mib" not in figures:
            figures["arenas_total_mib"] = float(value.replace(",", "")) / MIB
    return figures


def _deep_size(root: Any, seen: set[int]) -> int:
    """Bytes of a JSON-like structure (dicts, lists, strings, numbers), each object counted once."""
    size, stack = 0, [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return size


def _holder(item: Any, objects_ids: set[int], depth: int = 3) -> str:
    """The chain of types that keep ``item`` alive (first referrer at each level)."""
    chain = []
    for _ in range(depth):
        referrers = [r for r in gc.get_referrers(item) if id(r) in objects_ids]
        if not referrers:
            break
        item = referrers[0]
        name = type(item).__qualname__
        if isinstance(item, dict):
            name += "{" + ",".join(sorted(str(k) for k in list(item)[:4])) + "}"
        chain.append(name)
    return " <- ".join(chain)


def _bodies(objects: list[Any]) -> dict[str, Any]:
    """Kubernetes objects (dicts with apiVersion, kind and metadata) still alive, by kind, and who holds a few."""
    bodies = [o for o in objects if isinstance(o, dict) and "metadata" in o and "apiVersion" in o]
    ids = {id(o) for o in objects}
    by_kind = collections.Counter(str(b.get("kind")) for b in bodies)
    holders = collections.Counter(_holder(b, ids) for b in bodies[:: max(1, len(bodies) // 40)])
    return {"count": len(bodies), "by_kind": dict(by_kind.most_common(10)),
            "mib": sum(_deep_size(b, set()) for b in bodies) / MIB, "holders": dict(holders.most_common(8))}


def census() -> dict[str, Any]:
    """What is alive in the operator process, by owner."""

    from kopf._core.reactor.inventory import ResourceMemory

    objects = gc.get_objects()
    by_type = collections.Counter(type(o).__qualname__ for o in objects)
    result: dict[str, Any] = {"gc_objects": len(objects), "gc_frozen": gc.get_freeze_count(),
                              "by_type": dict(by_type.most_common(40))}
    # The memories of every resource Kopf saw (their container was made at start-up: frozen, so not listed).
    items = [o for o in objects if isinstance(o, ResourceMemory)]
    live = [m.daemons_memory.live_fresh_body for m in items if m.daemons_memory.live_fresh_body is not None]
    kopf = [{"memories": len(items), "live_bodies": len(live),
             "live_bodies_mib": sum(_deep_size(b._src, set()) for b in live) / MIB,
             "running_daemons": sum(len(m.daemons_memory.running_daemons) for m in items),
             "remaining_patches": sum(1 for m in items if m.remaining_patch)}]
    result["kopf_memories"] = kopf
    result["bodies"] = _bodies(objects)
    try:
        loop_tasks = [o for o in objects if isinstance(o, asyncio.Task) and not o.done()]
        result["asyncio_tasks"] = len(loop_tasks)
        result["asyncio_tasks_by_coro"] = dict(collections.Counter(
            getattr(t.get_coro(), "__qualname__", "?") for t in loop_tasks).most_common(15))
    except Exception as error:  # diagnostic only
        result["asyncio_tasks"] = repr(error)
    result["threads"] = threading.active_count()
    try:
        import aiohttp

        connectors = [o for o in objects if isinstance(o, aiohttp.TCPConnector)]
        result["aiohttp_connectors"] = [{"idle": sum(len(v) for v in c._conns.values()),
                                         "acquired": len(c._acquired), "limit": c.limit}
                                        for c in connectors]
        result["ssl_protocols"] = sum(1 for o in objects if type(o).__name__ == "SSLProtocol")
    except Exception as error:
        result["aiohttp_connectors"] = repr(error)
    from dbops.controller import driver, locks, metrics, trim
    from dbops.controller.job_cache import JOBS
    from dbops.controller.requeue import REQUEUE

    result["dbops"] = {"locks": len(locks._locks), "failing_since": len(driver._failing_since),
                       "phases": len(metrics.PHASES._phases), "requeue_due": len(REQUEUE._due),
                       "requeue_heap": len(REQUEUE._heap), "requeue_rechecks": len(REQUEUE._rechecks),
                       "running_jobs_cached": len(JOBS)}
    result["collections"] = trim.STATS.copy()
    result["tracemalloc_mib"] = tracemalloc.get_traced_memory()[0] / MIB if tracemalloc.is_tracing() else None
    result["malloc"] = _mallinfo()
    result["pymalloc"] = _pymalloc()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM", "RssAnon", "Threads")):
            key, value = line.split(":", 1)
            result[key] = value.strip()
    return result


def _dump(_signum: int, _frame: FrameType | None) -> None:
    global _count
    _count += 1
    base = Path(os.environ["DBOPS_TRACEMALLOC_DIR"])
    number = _count

    def write() -> None:
        (base / f"{number}.census.json.tmp").write_text(json.dumps(census(), indent=1, default=str))
        (base / f"{number}.census.json.tmp").rename(base / f"{number}.census.json")
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(base / f"{number}.snapshot"))
        else:
            (base / f"{number}.snapshot").write_bytes(b"-")

    # A thread: taking the snapshot in the signal handler would stall the event loop mid-callback.
    threading.Thread(target=write, daemon=True).start()


if __name__ == "__main__":
    frames = int(os.environ.get("DBOPS_TRACEMALLOC_FRAMES", "1"))  # 1: the allocating line, far cheaper
    if frames > 0:
        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR1, _dump)
    sys.exit(main())
