"""The periodic re-check: one thread lists each kind and queues what needs another look.

Kopf timers would keep one asyncio task per resource for the operator's lifetime (the bulk of the memory
that grew with the number of resources, see bench/README.md P7); one list per kind and period does the same
work with no per-resource state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dbops.kube import objects

logger = logging.getLogger("dbops.controller")
Visit = Callable[[str, dict[str, Any]], None]


def start(interval: float, kinds: Sequence[str], namespaces: Sequence[str], visit: Visit) -> threading.Thread | None:
    """Every ``interval`` seconds, call ``visit(kind, body)`` for each resource of each kind (0: never)."""
    if interval <= 0:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            sweep(kinds, namespaces, visit)

    thread = threading.Thread(target=loop, name="dbops-recheck", daemon=True)
    thread.start()
    return thread


def sweep(kinds: Sequence[str], namespaces: Sequence[str], visit: Visit) -> None:
    """One pass: list every kind in every watched namespace (all when none is given) and visit each body."""
    for kind in kinds:
        scopes: list[str | None] = list(namespaces) or [None]
        for namespace in scopes:
            try:
                items = objects.list_objects(kind, namespace)
            except Exception as error:  # the next pass tries again
                logger.warning("re-check could not list %s in %s: %s", kind, namespace or "all namespaces", error)
                continue
            for body in items:
                try:
                    visit(kind, body)
                except Exception as error:
                    logger.warning("re-check of %s %s failed: %s", kind, body["metadata"].get("name"), error)
