"""Operator settings applied when Kopf starts: storage keys, finalizer, workers, no peering, API session."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from dbops.controller import discovery, metrics
from dbops.controller.config import CONFIG
from dbops.controller.registry import REGISTRY
from dbops.kube import session as kube_session

FINALIZER = "dbops.io/finalizer"


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Configure Kopf and open the API session used by dbops.kube."""
    settings.peering.standalone = True
    settings.posting.enabled = False
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="dbops.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="dbops.io", key="last-handled-configuration")
    settings.execution.max_workers = CONFIG.max_workers
    settings.networking.request_timeout = 60.0
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    kube_session.configure()
    metrics.serve(CONFIG.metrics_port)
    logging.getLogger("dbops").info("dbops operator starting with image %s", CONFIG.image)


@kopf.on.startup(registry=REGISTRY)
async def watch_discovery(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep every handled kind watched when Kopf read API discovery from an API server still starting."""
    discovery.start(settings, clusterwide=not CONFIG.namespaces)


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Authenticate Kopf the way dbops.kube does: a kubeconfig or the in-cluster service account."""
    info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
    return info
