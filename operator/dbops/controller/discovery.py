"""Re-read API discovery while Kopf serves fewer kinds than dbops handles (an API server that was restarting)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

# Kopf reads API discovery once at start-up and again only when a CRD changes. A kube-apiserver answers
# discovery before it has registered every group (the first ~100 ms after a restart), so an operator that
# starts or scans then serves no dbops kind and no Jobs, forever, with only an "Unresolved resources" warning.
# The names below are Kopf's own observation step (the one it runs on a CRD change): not public API, so the
# unit tests pin them.
from kopf._cogs.structs import references
from kopf._core.reactor import observation

from dbops.controller.registry import REGISTRY

logger = logging.getLogger("dbops.controller")

INSIGHTS = references.Insights()
"""What Kopf serves (resources, namespaces, its backbone): the CLI hands it to kopf.run so this module sees it."""

CHECK_SECONDS = 5.0
_tasks: set[asyncio.Task[None]] = set()


def needed_selectors(registry: kopf.OperatorRegistry) -> set[references.Selector]:
    """The resource selectors the handlers watch (the same union Kopf watches)."""
    return set(registry._watching.get_all_selectors() | registry._spawning.get_all_selectors()
               | registry._changing.get_all_selectors() | registry._indexing.get_all_selectors())


def unserved_groups(insights: references.Insights, registry: kopf.OperatorRegistry,
                    *, clusterwide: bool) -> set[str]:
    """API groups to scan again: those of handled kinds Kopf does not watch, and of missing backbone kinds.

    Only selectors naming their group count ("" is the core group): dbops has no group-less selectors.
    """
    backbone = [references.CRDS] + ([] if clusterwide else [references.NAMESPACES])
    missing = [selector for selector in needed_selectors(registry) if not selector.select(insights.watched_resources)]
    missing += [selector for selector in backbone if selector not in insights.backbone]
    return {selector.group for selector in missing if selector.group is not None}


async def rescan(groups: set[str], settings: kopf.OperatorSettings, registry: kopf.OperatorRegistry,
                 insights: references.Insights) -> None:
    """Scan these groups again and let Kopf start (or stop) watching what they serve now."""
    for group in sorted(groups):
        # A CRD event of this group makes Kopf do exactly this scan and revision.
        event: Any = {"type": "MODIFIED", "object": {"spec": {"group": group}}}
        await observation.process_discovered_resource_event(raw_event=event, settings=settings, registry=registry,
                                                            insights=insights)


async def keep_served(settings: kopf.OperatorSettings, *, clusterwide: bool,
                      registry: kopf.OperatorRegistry = REGISTRY, insights: references.Insights = INSIGHTS,
                      interval: float = CHECK_SECONDS) -> None:
    """Forever: once Kopf's first scan is done, re-scan any group whose handled kinds are not watched."""
    await insights.ready_resources.wait()
    while True:
        groups = unserved_groups(insights, registry, clusterwide=clusterwide)
        if groups:
            logger.warning("the API server did not list %s when Kopf read discovery: reading it again",
                           ", ".join(group or "core" for group in sorted(groups)))
            try:
                await rescan(groups, settings, registry, insights)
            except Exception as error:  # unreachable again: the next round retries
                logger.warning("re-reading API discovery failed: %s", error)
            else:
                if not unserved_groups(insights, registry, clusterwide=clusterwide):
                    logger.info("every handled kind is watched again")
        await asyncio.sleep(interval)


def start(settings: kopf.OperatorSettings, *, clusterwide: bool) -> None:
    """Start `keep_served` on the operator's event loop (called from an async start-up handler)."""
    task = asyncio.get_running_loop().create_task(keep_served(settings, clusterwide=clusterwide),
                                                  name="dbops discovery check")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
