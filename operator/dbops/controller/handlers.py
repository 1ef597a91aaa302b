"""The Kopf handlers: thin adapters from events and timers to the per-kind reconcilers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from dbops.api.base import GROUP, VERSION
from dbops.api.kinds import BACKUP, MIGRATION, RESTORE, SCHEDULE, Kind
from dbops.api.status import TERMINAL_PHASES
from dbops.controller import backup, driver, effects, migration, restore, schedule
from dbops.controller.config import CONFIG
from dbops.controller.job_cache import JOBS
from dbops.controller.registry import REGISTRY
from dbops.controller.requeue import REQUEUE
from dbops.reconcile import retry as retry_token
from dbops.reconcile.jobs import job_state
from dbops.specs.owner import KIND_LABEL, MANAGED_BY, MANAGER, PARENT_KIND_LABEL

logger = logging.getLogger("dbops.controller")

RECONCILERS: dict[str, driver.Controller[Any, Any]] = {
    controller.kind: controller
    for controller in (backup.CONTROLLER, restore.CONTROLLER, migration.CONTROLLER, schedule.CONTROLLER)
}


def reconcile(kind: str, namespace: str, name: str, retry: int = 0) -> None:
    """Reconcile one resource of a kind."""
    driver.run(RECONCILERS[kind], namespace, name, retry)


def _requeued(kind: str, namespace: str, name: str) -> None:
    """A decision asked to be looked at again (Decision.requeue_after), or a retry is due."""
    try:
        reconcile(kind, namespace, name)
    except kopf.TemporaryError as error:
        REQUEUE.after((kind, namespace, name), error.delay or 30.0)


@kopf.on.startup(registry=REGISTRY)
def start_requeue(**_: Any) -> None:
    """Start the thread that carries out requeue_after wake-ups."""
    REQUEUE.start(_requeued, workers=max(1, CONFIG.max_workers // 2))


# Every kind: create, resume, spec change. Unfinished resources are re-checked through the requeue heap
# (driver.recheck_later), not Kopf timers -------------------------------------------------------------

def _register(kind: Kind) -> None:
    def changed(namespace: str | None, name: str, retry: int = 0, **_: Any) -> None:
        """A resource appeared, changed or was found at startup."""
        reconcile(kind.kind, namespace or "", name, retry)

    def resumed(body: kopf.Body, namespace: str | None, name: str, retry: int = 0, **_: Any) -> None:
        """A resource found at start-up: Kopf has just listed it, so its first attempt reads nothing again."""
        driver.run(RECONCILERS[kind.kind], namespace or "", name, retry, listed=body if retry == 0 else None)

    kopf.on.resume(GROUP, VERSION, kind.plural, registry=REGISTRY, id="reconcile")(resumed)
    kopf.on.create(GROUP, VERSION, kind.plural, registry=REGISTRY, id="reconcile")(changed)
    kopf.on.update(GROUP, VERSION, kind.plural, field="spec", registry=REGISTRY, id="reconcile")(changed)


for _kind in (BACKUP, RESTORE, MIGRATION, SCHEDULE):
    _register(_kind)


async def _seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    """Every event of a resource: a deleted one drops its lock, retry record, wake-up and phase gauge; any other
    arms its re-check, so an unfinished resource is looked at again even if no handler ran for this event.

    Async: it only takes short in-memory locks, so it runs on the event loop instead of queueing every event of
    every resource behind the reconciles in the handler threads."""
    metadata = body.get("metadata", {})
    kind = str(body.get("kind") or "")
    if type == "DELETED":
        driver.forget(kind, str(metadata.get("namespace") or ""), str(metadata.get("name")))
    elif kind in RECONCILERS:
        driver.recheck_later(RECONCILERS[kind], body)


for _kind in (BACKUP, RESTORE, MIGRATION, SCHEDULE):
    kopf.on.event(GROUP, VERSION, _kind.plural, registry=REGISTRY, id="seen")(_seen)


# DatabaseBackup: deletion (the ttl is a requeue wake-up: backup.expire_later) ---------------------

@kopf.on.delete(GROUP, VERSION, BACKUP.plural, registry=REGISTRY)
def backup_deleted(body: kopf.Body, retry: int = 0, **_: Any) -> None:
    """Stop the backup's Jobs and delete its artifact per deletionPolicy before the resource goes."""
    backup.finalize(body, retry)


# Jobs -------------------------------------------------------------------------------------------

def _job_finished(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """Whether a Job event is worth a reconcile: the Job finished (and still exists).

    A filter, evaluated on the event loop: the events of running Jobs (all of them at once when the operator
    restarts and Kopf re-lists every Job) never queue for the handler threads the reconciles need."""
    return type != "DELETED" and job_state(body) in ("Succeeded", "Failed")


@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY: MANAGER}, registry=REGISTRY, id="job-seen")
async def job_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    """Every event of a Job we made: remember whether it runs (job_cache), so re-checks and a restart's re-list
    need no GET of it. Async, on the event loop: it only updates a dict."""
    JOBS.seen(body, deleted=type == "DELETED")


@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY: MANAGER}, when=_job_finished, registry=REGISTRY)
def job_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A Job we made finished: reconcile the resource that owns it."""
    if not _job_finished(body, type):
        return
    JOBS.seen(body)  # before the reconcile reads it (job_seen ran first, this only makes sure)
    kind = (body.get("metadata", {}).get("labels") or {}).get(KIND_LABEL)
    owners = [ref for ref in body.get("metadata", {}).get("ownerReferences") or [] if ref.get("kind") == kind]
    if kind not in RECONCILERS or not owners:
        return
    namespace = body["metadata"]["namespace"]
    try:
        reconcile(kind, namespace, owners[0]["name"])
    except kopf.TemporaryError as error:
        logger.info("reconcile of %s %s after Job %s deferred: %s", kind, owners[0]["name"],
                    body["metadata"]["name"], error)
        REQUEUE.after((kind, namespace, owners[0]["name"]), error.delay or 30.0)


# Child resources: a finished child backup or restore moves its parent on ------------------------

def _child_done(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """Whether a child's event is worth its parent's reconcile (a filter on the event loop, as for Jobs)."""
    return type != "DELETED" and (body.get("status") or {}).get("phase") in TERMINAL_PHASES


def _child_finished(body: kopf.Body, type: str | None, **_: Any) -> None:
    if not _child_done(body, type):
        return
    parent = effects.parent_of(body)
    if parent is None or parent[0] not in RECONCILERS:
        return
    try:
        reconcile(parent[0], body["metadata"]["namespace"], parent[1])
    except kopf.TemporaryError as error:
        logger.info("reconcile of %s %s after its child finished deferred: %s", parent[0], parent[1], error)
        REQUEUE.after((parent[0], body["metadata"]["namespace"], parent[1]), error.delay or 30.0)


for _kind in (BACKUP, RESTORE):
    kopf.on.event(GROUP, VERSION, _kind.plural, labels={PARENT_KIND_LABEL: kopf.PRESENT}, when=_child_done,
                  registry=REGISTRY, id="child-finished")(_child_finished)


# Retry: a finished resource given a new dbops.io/retry token (dbops.reconcile.retry) -------------

def _retry_asked(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """Whether a finished resource carries a retry token not acted on yet (a filter on the event loop)."""
    return type != "DELETED" and retry_token.pending(body)


def _retry_requested(body: kopf.Body, type: str | None, **_: Any) -> None:
    if not _retry_asked(body, type):
        return
    kind, namespace, name = str(body.get("kind")), body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        reconcile(kind, namespace, name)
    except kopf.TemporaryError as error:
        REQUEUE.after((kind, namespace, name), error.delay or 30.0)


for _kind in (BACKUP, RESTORE, MIGRATION):
    kopf.on.event(GROUP, VERSION, _kind.plural, when=_retry_asked, registry=REGISTRY,
                  id="retry-requested")(_retry_requested)
