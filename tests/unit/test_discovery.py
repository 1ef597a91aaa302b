"""Which API groups the operator re-reads when Kopf's discovery came from an API server still starting."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from kopf._cogs.structs import references
from kopf._core.reactor import observation

import dbops.controller.handlers  # noqa: F401  (registers every handler in REGISTRY)
from dbops.api.base import GROUP, VERSION
from dbops.api.kinds import BACKUP, MIGRATION, RESTORE, SCHEDULE
from dbops.controller import discovery
from dbops.controller.registry import REGISTRY

pytestmark = pytest.mark.unit

HANDLED = [references.Resource(GROUP, VERSION, kind.plural, namespaced=True, verbs=["list", "watch", "patch"])
           for kind in (BACKUP, RESTORE, MIGRATION, SCHEDULE)]
JOBS = references.Resource("batch", "v1", "jobs", namespaced=True, verbs=["list", "watch", "patch"])
NAMESPACES = references.Resource("", "v1", "namespaces", verbs=["list", "watch"])
CRDS = references.Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", verbs=["list", "watch"])


def insights_serving(*resources: references.Resource, backbone: tuple[references.Resource, ...] = (
        NAMESPACES, CRDS)) -> references.Insights:
    """What Kopf serves after a scan that found these resources (and these backbone kinds)."""
    async def build() -> references.Insights:
        insights = references.Insights()
        insights.watched_resources.update(resources)
        await insights.backbone.fill(resources=backbone)
        return insights
    return asyncio.run(build())


def test_the_handlers_watch_the_four_kinds_and_jobs() -> None:
    selectors = discovery.needed_selectors(REGISTRY)
    served = {resource for resource in [*HANDLED, JOBS] if any(s.select([resource]) for s in selectors)}
    assert served == {*HANDLED, JOBS}
    assert all(selector.group is not None for selector in selectors)


def test_nothing_is_re_read_when_every_kind_is_watched() -> None:
    insights = insights_serving(*HANDLED, JOBS)
    assert discovery.unserved_groups(insights, REGISTRY, clusterwide=False) == set()


def test_a_partial_discovery_names_the_groups_it_missed() -> None:
    # What an API server answers ~50 ms after a restart: no CRD group yet, no batch.
    insights = insights_serving(backbone=(NAMESPACES,))
    assert discovery.unserved_groups(insights, REGISTRY, clusterwide=False) == {
        GROUP, "batch", "apiextensions.k8s.io"}
    insights = insights_serving(*HANDLED)
    assert discovery.unserved_groups(insights, REGISTRY, clusterwide=True) == {"batch"}


def test_a_missing_namespace_backbone_matters_only_when_watching_namespaces() -> None:
    insights = insights_serving(*HANDLED, JOBS, backbone=(CRDS,))
    assert discovery.unserved_groups(insights, REGISTRY, clusterwide=False) == {""}
    assert discovery.unserved_groups(insights, REGISTRY, clusterwide=True) == set()


def test_kopf_still_has_the_observation_step_the_operator_reuses() -> None:
    # Not public Kopf API: an upgrade that renames it must fail here, not in a restarted cluster.
    parameters = inspect.signature(observation.process_discovered_resource_event).parameters
    assert {"raw_event", "settings", "registry", "insights"} <= set(parameters)
    for part in ("_watching", "_spawning", "_changing", "_indexing"):
        assert hasattr(getattr(REGISTRY, part), "get_all_selectors")
