"""Carrying out a Decision: the one place where the operator creates, applies and deletes objects."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from dbops import errors
from dbops.api.roles import JobRole
from dbops.controller import metrics
from dbops.controller.job_cache import JOBS
from dbops.controller.requeue import REQUEUE
from dbops.kube import jobs as kube_jobs
from dbops.kube import objects
from dbops.kube import session as kube_session
from dbops.reconcile.actions import ChildRequest, Decision, JobRequest
from dbops.specs.jobs import TTL_ANNOTATION
from dbops.specs.owner import KIND_LABEL, NAME_LABEL, Owner

logger = logging.getLogger("dbops.controller")
PARENT_ANNOTATION = "dbops.io/parent"
ADOPTED_RECHECK_SECONDS = 1.0

JobBuilder = Callable[[JobRequest], dict[str, Any]]
"""Builds the Job manifest of a request (its role and parameters)."""


def by_role(kind: str, builders: Mapping[JobRole, JobBuilder]) -> JobBuilder:
    """A JobBuilder looking the request's role up in a kind's table."""

    def build(request: JobRequest) -> dict[str, Any]:
        builder = builders.get(request.role)
        if builder is None:
            raise errors.DbopsError(f"{kind} has no {request.role} Job")
        return builder(request)

    return build


def with_job_env(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Job or CronJob manifest with the operator's extra runner env vars added to its containers."""
    from dbops.controller.config import CONFIG

    if CONFIG.job_env:
        job_spec = manifest["spec"]["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else manifest["spec"]
        for container in job_spec["template"]["spec"]["containers"]:
            names = {env["name"] for env in container.get("env", [])}
            container.setdefault("env", []).extend(
                {"name": name, "value": value} for name, value in sorted(CONFIG.job_env.items()) if name not in names)
    return manifest


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


def rejected(verb: str, kind: str, name: str, error: kube_session.ApiRejectedError) -> errors.PermanentError:
    """The permanent error shown on the resource when the API server refuses one of the operator's writes."""
    # 403 is RBAC ("User … cannot create …") or an admission refusal such as a namespace's ResourceQuota
    # ("exceeded quota"): only the first is about the operator's permissions.
    if error.status == kube_session.FORBIDDEN and " cannot " in error.detail:
        return errors.PermanentError(f"the operator may not {verb} {kind} {name}: {error.detail}",
                                     reason="Forbidden")
    return errors.PermanentError(f"the API server rejected {kind} {name}: {error.detail}", reason=f"{kind}Rejected")


def _write(verb: str, manifest: Mapping[str, Any], action: Callable[[Mapping[str, Any]], Any]) -> Any:
    try:
        return action(manifest)
    except kube_session.ApiRejectedError as error:
        raise rejected(verb, str(manifest["kind"]), str(manifest["metadata"]["name"]), error) from None


def owned_by(owner: Owner, obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether an existing object of the name we asked for is ours: owned by this resource (its uid), or, for the
    objects made without an owner reference, labelled for it and its role."""
    metadata = obj.get("metadata") or {}
    references = metadata.get("ownerReferences") or []
    if references:
        return any(ref.get("uid") == owner.uid for ref in references)
    found = metadata.get("labels") or {}
    return all(found.get(key) == value for key, value in labels.items())


def _job(owner: Owner, request: JobRequest, build: JobBuilder, decision: Decision) -> None:
    manifest = with_job_env(build(request))
    manifest["metadata"]["name"] = request.name
    job, created = _write("create", manifest, objects.create_or_adopt)
    if not created and not owned_by(owner, job, manifest["metadata"]["labels"]):
        # Adopting it would report another object's work as ours (or run nothing): say which Job is in the way.
        refs = ", ".join(f"{ref.get('kind')} {ref.get('name')}" for ref in job["metadata"].get("ownerReferences") or [])
        whose = f"owned by {refs}" if refs else "with no owner"
        raise errors.PermanentError(f"Job {request.name} already exists and is not this {owner.kind}'s ({whose}): "
                                    f"delete or rename that Job, then re-create the {owner.kind}",
                                    reason="JobNameConflict")
    JOBS.seen(job)  # the next read of it (a re-check) needs no GET
    if not created:  # the decision assumed it missing or just read it: read what the adopted Job says soon
        REQUEUE.after((owner.kind, owner.namespace, owner.name), ADOPTED_RECHECK_SECONDS)
    record = getattr(decision.status, "started_jobs", None)
    for started in record or []:
        if started.name == request.name and not started.uid:
            started.uid = str(job["metadata"].get("uid") or "") or None
    counter = metrics.JOBS_CREATED if created else metrics.JOBS_ADOPTED
    counter.labels(owner.kind, request.role).inc()
    logger.info("%s Job %s for %s %s/%s", "created" if created else "adopted", request.name, owner.kind,
                owner.namespace, owner.name)


def carry_out(owner: Owner, decision: Decision, build: JobBuilder | None = None) -> None:
    """Apply, create and delete what a decision asks for; an existing object of the same name is adopted.

    A write the API server refuses for what it is (400, 403, 422) raises a PermanentError naming the object.
    """
    for manifest in decision.apply:
        _write("apply", with_job_env(manifest) if manifest["kind"] == "CronJob" else manifest, objects.apply)
    for manifest in decision.create:
        _, created = _write("create", manifest, objects.create_or_adopt)
        logger.info("%s %s %s for %s %s/%s", "created" if created else "adopted", manifest["kind"],
                    manifest["metadata"]["name"], owner.kind, owner.namespace, owner.name)
    for request in decision.jobs:
        if build is None:
            raise errors.DbopsError(f"{owner.kind} asked for a {request.role} Job but builds none")
        _job(owner, request, build, decision)
    for child in decision.children:
        manifest = child_manifest(owner, child)
        _, created = _write("create", manifest, objects.create_or_adopt)
        logger.info("%s %s %s for %s %s/%s", "created" if created else "adopted", child.kind, child.name,
                    owner.kind, owner.namespace, owner.name)
    for target in decision.delete:
        namespace = target.get("namespace") or owner.namespace
        try:
            objects.delete(target["kind"], namespace, target["name"],
                           propagation=target.get("propagation", "Background"),
                           resource_version=target.get("resourceVersion"))
        except kube_session.ApiRejectedError as error:
            raise rejected("delete", target["kind"], target["name"], error) from None
        if target["kind"] == "Job":
            JOBS.gone(namespace, target["name"])


def release_jobs(owner: Owner) -> None:
    """Hand the user's ttlSecondsAfterFinished (held in TTL_ANNOTATION) to the resource's Jobs, once a terminal
    status holding their results was written. A failure only leaves the Job until the resource is deleted."""
    selector = f"{KIND_LABEL}={owner.kind},{NAME_LABEL}={owner.labels('')[NAME_LABEL]}"
    try:
        for job in objects.list_objects("Job", owner.namespace, label_selector=selector):
            metadata = job.get("metadata") or {}
            held = (metadata.get("annotations") or {}).get(TTL_ANNOTATION)
            if held is None or (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
                continue
            if not any(ref.get("uid") == owner.uid for ref in metadata.get("ownerReferences") or []):
                continue
            kube_jobs.set_ttl(owner.namespace, str(metadata["name"]), int(held))
    except (kube_session.ApiError, ValueError) as error:
        logger.warning("could not hand the ttl back to the Jobs of %s %s/%s: %s", owner.kind, owner.namespace,
                       owner.name, error)
