"""Operator settings applied when Kopf starts: storage keys, finalizer, workers, no peering, API session."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import aiohttp
import kopf

from dbops.controller import discovery, metrics, trim
from dbops.controller.config import CONFIG
from dbops.controller.registry import REGISTRY
from dbops.kube import session as kube_session

FINALIZER = "dbops.io/finalizer"
WATCHED_KINDS = 5
"""DatabaseBackup, DatabaseBackupSchedule, DatabaseMigration, DatabaseRestore and Job."""
REQUEST_CONNECTIONS = 32
KEEPALIVE_SECONDS = 5.0
IDLE_SECONDS = 0.1


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
    # At most this many objects per kind in flight at once (the rest wait as raw events): Kopf otherwise starts a
    # worker per object, each holding its object's body while it waits for a handler thread, and a burst of 1,000
    # new resources leaves the allocator at that high-water mark (bench/README.md, P7). A worker frees its slot
    # 0.1 s after its object's last event instead of 5 s: an idle worker only holds a slot (and its last body),
    # and with 1 s the slots, not the handler threads, set the pace of a restart's re-list (5,000 resources
    # took 429 s, bench/README.md, P8); a later event of the object simply starts a new worker.
    settings.queueing.worker_limit = max(16, 4 * CONFIG.max_workers)
    settings.queueing.idle_timeout = IDLE_SECONDS
    settings.networking.request_timeout = 60.0
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    kube_session.configure()
    metrics.serve(CONFIG.metrics_port)
    trim.start()
    logging.getLogger("dbops").info("dbops operator starting with image %s", CONFIG.image)


@kopf.on.startup(registry=REGISTRY)
async def watch_discovery(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep every handled kind watched when Kopf read API discovery from an API server still starting."""
    discovery.start(settings, clusterwide=not CONFIG.namespaces)


def connection_limit(namespaces: int) -> int:
    """Kopf's API connections: one per watch stream (five kinds per namespace, or cluster-wide, plus Kopf's own
    two), and a few for patches and Events.

    Kopf's own session has no limit: a burst of 1,000 new resources opened ~80 connections, each holding a
    256 KiB TLS read buffer (asyncio's sslproto) for as long as it stays open (bench/README.md, P7). Requests
    wait for a free connection within Kopf's request timeout: with 8 request connections, patches of a burst
    on a loaded machine timed out and were retried.
    """
    return WATCHED_KINDS * max(1, namespaces) + 2 + REQUEST_CONNECTIONS


@kopf.on.login(registry=REGISTRY)
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """Authenticate Kopf the way dbops.kube does (a kubeconfig or the in-cluster service account), on a session
    with a bounded connection pool."""
    info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    with warnings.catch_warnings():  # the same as Kopf's own session: basic auth is deprecated, not an error
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = info.as_aiohttp_basic_auth()
    connector = aiohttp.TCPConnector(limit=connection_limit(len(CONFIG.namespaces)), ssl=info.as_ssl_context(),
                                     keepalive_timeout=KEEPALIVE_SECONDS)
    session = aiohttp.ClientSession(connector=connector, headers=info.as_http_headers(), auth=auth,
                                    proxy=info.proxy_url, trust_env=info.trust_env)
    return kopf.AiohttpSession(aiohttp_session=session, server=info.server, priority=info.priority,
                               default_namespace=info.default_namespace, expiration=info.expiration)
