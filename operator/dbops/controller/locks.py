"""Per-resource locks: one reconcile at a time per object, whatever event or timer triggered it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_guard = threading.Lock()
_locks: dict[tuple[str, str, str], threading.Lock] = {}


@contextmanager
def hold(kind: str, namespace: str, name: str) -> Iterator[None]:
    """Hold the lock of one resource."""
    key = (kind, namespace, name)
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop the lock of a deleted resource."""
    with _guard:
        _locks.pop((kind, namespace, name), None)


def count() -> int:
    """How many resources have a lock (exported as ``dbops_operator_resource_locks``)."""
    with _guard:
        return len(_locks)
