"""The shared steps of every reconcile: read Jobs, check references, create children, write status."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from dbops import errors
from dbops.api.common import SecretKeySelector
from dbops.api.status import ResourceStatus
from dbops.controller import metrics
from dbops.kube import events, objects
from dbops.kube import jobs as kube_jobs
from dbops.kube import session as kube_session
from dbops.reconcile.actions import ChildRequest, Decision
from dbops.reconcile.jobs import JobOutcome, job_outcome, job_state
from dbops.redaction import redact
from dbops.specs.owner import ROLE_LABEL, Owner

logger = logging.getLogger("dbops.controller")
MAX_BACKOFF_SECONDS = 300.0
CONFLICT = 409

JobBuilder = Callable[[str, Mapping[str, Any]], dict[str, Any]]
"""Builds the Job manifest for a role and its parameters."""


def backoff(retry: int) -> float:
    """Seconds before the next attempt after ``retry`` failed ones (5 s doubling, at most 5 minutes)."""
    return float(min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** min(retry, 10)))


def involved(owner: Owner) -> dict[str, Any]:
    """The involvedObject of an Event about a resource."""
    from dbops.api.base import API_VERSION

    return {"apiVersion": API_VERSION, "kind": owner.kind, "namespace": owner.namespace, "name": owner.name,
            "uid": owner.uid}


def read_job(namespace: str, name: str) -> JobOutcome:
    """The outcome of one Job (its pods are read only once it finished)."""
    job = kube_jobs.get_job(namespace, name)
    if job_state(job) in ("Succeeded", "Failed"):
        return job_outcome(job, kube_jobs.job_pods(namespace, name))
    return job_outcome(job)


def require_secrets(namespace: str, selectors: Iterable[SecretKeySelector]) -> None:
    """Raise MissingReferenceError unless every referenced Secret key exists."""
    cache: dict[str, set[str] | None] = {}
    for selector in selectors:
        if selector.name not in cache:
            cache[selector.name] = objects.secret_keys(namespace, selector.name)
        keys = cache[selector.name]
        if keys is None:
            raise errors.MissingReferenceError(f"Secret {selector.name} not found")
        if selector.key not in keys:
            raise errors.MissingReferenceError(f"Secret {selector.name} has no key {selector.key}")


def with_job_env(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Job manifest with the operator's extra runner env vars added to its containers."""
    from dbops.controller.config import CONFIG

    if CONFIG.job_env:
        job_spec = manifest["spec"]["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else manifest["spec"]
        for container in job_spec["template"]["spec"]["containers"]:
            names = {env["name"] for env in container.get("env", [])}
            container.setdefault("env", []).extend(
                {"name": name, "value": value} for name, value in sorted(CONFIG.job_env.items()) if name not in names)
    return manifest


PARENT_ANNOTATION = "dbops.io/parent"
FAULT_EXIT_AFTER_JOB_CREATE = "DBOPS_FAULT_EXIT_AFTER_JOB_CREATE"
"""Set to 1 (tests only) to make the operator exit right after creating a Job, before writing status."""


def child_manifest(owner: Owner, child: ChildRequest) -> dict[str, Any]:
    """The manifest of a child dbops resource, labelled (and annotated with the full name) for its parent."""
    from dbops.api.base import API_VERSION

    metadata: dict[str, Any] = {
        "name": child.name, "namespace": owner.namespace, "labels": owner.parent_labels(),
        "annotations": {PARENT_ANNOTATION: f"{owner.kind}/{owner.name}"},
    }
    if child.owned:
        metadata["ownerReferences"] = [owner.owner_reference(controller=False)]
    return {"apiVersion": API_VERSION, "kind": child.kind, "metadata": metadata, "spec": child.spec}


def parent_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the parent of a child dbops resource."""
    value = str(((body.get("metadata") or {}).get("annotations") or {}).get(PARENT_ANNOTATION) or "")
    kind, _, name = value.partition("/")
    return (kind, name) if kind and name else None


def start_jobs(owner: Owner, decision: Decision, build: JobBuilder) -> None:
    """Create the Jobs a decision asks for; an existing Job of the same name is adopted."""
    for request in decision.jobs:
        manifest = with_job_env(build(request.role, request.params))
        manifest["metadata"]["name"] = request.name
        _, created = objects.create_or_adopt(manifest)
        counter = metrics.JOBS_CREATED if created else metrics.JOBS_ADOPTED
        counter.labels(owner.kind, request.role).inc()
        if created and os.environ.get(FAULT_EXIT_AFTER_JOB_CREATE) == "1":
            os._exit(137)  # fault injection for the crash-consistency tests: die before the status patch
        logger.info("%s Job %s for %s %s/%s", "created" if created else "adopted", request.name, owner.kind,
                    owner.namespace, owner.name)
    for child in decision.children:
        manifest = child_manifest(owner, child)
        _, created = objects.create_or_adopt(manifest)
        logger.info("%s %s %s for %s %s/%s", "created" if created else "adopted", child.kind, child.name,
                    owner.kind, owner.namespace, owner.name)
    for manifest in decision.create:
        _, created = objects.create_or_adopt(manifest)
        logger.info("%s %s %s for %s %s/%s", "created" if created else "adopted", manifest["kind"],
                    manifest["metadata"]["name"], owner.kind, owner.namespace, owner.name)
    for manifest in decision.apply:
        objects.apply(manifest)
    for target in decision.delete:
        objects.delete(target["kind"], target["namespace"], target["name"],
                       propagation=target.get("propagation", "Background"))


def write_status(owner: Owner, body: Mapping[str, Any], decision: Decision) -> None:
    """Patch the status when it changed (guarded by resourceVersion) and emit the decision's Events."""
    new = decision.status.to_wire()
    old = body.get("status") or {}
    if new != {k: v for k, v in old.items() if k in new} or set(new) - set(old):
        objects.patch_status(owner.kind, owner.namespace, owner.name, new,
                             resource_version=body["metadata"].get("resourceVersion"))
    for event in decision.events:
        events.emit(involved(owner), event.type, event.reason, event.message)
    metrics.PHASES.record(owner.kind, owner.namespace, owner.name, decision.status.phase)
    if decision.events:
        logger.info("%s %s/%s is %s: %s", owner.kind, owner.namespace, owner.name, decision.status.phase,
                    redact(decision.status.message))


def report_problem(owner: Owner, body: Mapping[str, Any], status: ResourceStatus, reason: str, message: str,
                   *, terminal: bool = False) -> None:
    """Show a problem (MissingReference, InvalidSpec…) in the Ready condition and as a Warning Event."""
    message = redact(message)
    before = status.condition("Ready")
    if terminal:
        status.mark_failed(reason, message, generation=owner.generation)
    elif not status.is_terminal:
        status.mark_progressing(status.phase if status.phase != "Running" else "Pending", reason, message,
                                generation=owner.generation)
    else:
        return
    if before is not None and before.reason == reason and before.message == message:
        return
    decision = Decision(status)
    decision.event("Warning", reason, message)
    write_status(owner, body, decision)


def run(kind: str, namespace: str, name: str, retry: int, reconcile: Callable[[dict[str, Any]], None],
        status_model: type[ResourceStatus]) -> None:
    """Read a resource and reconcile it, turning dbops errors into conditions and Kopf retries."""
    from dbops.controller import locks

    with metrics.reconcile_timer(kind), locks.hold(kind, namespace, name):
        for attempt in range(3):
            body = objects.get(kind, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            owner = Owner.from_body(body)
            try:
                reconcile(body)
                return
            except ValidationError as error:
                message = "invalid spec: " + "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
                report_problem(owner, body, _status(status_model, body), "InvalidSpec", message)
                raise kopf.TemporaryError(message, delay=backoff(retry)) from None
            except errors.MissingReferenceError as error:
                report_problem(owner, body, _status(status_model, body), error.reason, str(error))
                raise kopf.TemporaryError(str(error), delay=backoff(retry)) from None
            except errors.PermanentError as error:
                report_problem(owner, body, _status(status_model, body), error.reason, str(error), terminal=True)
                return
            except kube_session.ApiError as error:
                if error.status == CONFLICT and attempt < 2:
                    continue
                raise kopf.TemporaryError(redact(str(error)), delay=min(backoff(retry), 30.0)) from None


def _status(model: type[ResourceStatus], body: Mapping[str, Any]) -> ResourceStatus:
    return model.model_validate(body.get("status") or {})


def role_of(job: Mapping[str, Any]) -> str:
    """The dbops role label of a Job."""
    return str(((job.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL, ""))
