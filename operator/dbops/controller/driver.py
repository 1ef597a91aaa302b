"""The shared reconcile loop of every kind: read, reconcile, and show every error on the resource.

Errors are handled by what they are: a permanent one (invalid spec, a write the API server refuses
with 4xx other than 409/429) fails the resource with a reason, ``Failed=True`` and a Warning Event; a
missing reference is shown at once and fails the resource once it lasted ``stall_seconds``; a transient
one (5xx, timeouts, conflicts) is retried and shown on the resource once it lasted ``stall_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import kopf
from pydantic import ValidationError

from dbops import errors
from dbops.api.base import ApiModel
from dbops.api.common import SecretKeySelector
from dbops.api.status import TERMINAL_PHASES, ResourceStatus
from dbops.controller import effects, metrics
from dbops.controller.job_cache import JOBS
from dbops.controller.requeue import REQUEUE
from dbops.kube import events, objects
from dbops.kube import jobs as kube_jobs
from dbops.kube import session as kube_session
from dbops.reconcile.actions import Decision
from dbops.reconcile.jobs import JobOutcome, job_outcome, job_state
from dbops.reconcile.pod_start import with_start_problem
from dbops.redaction import redact
from dbops.specs.owner import MANAGED_BY, MANAGER, ROLE_LABEL, Owner

logger = logging.getLogger("dbops.controller")
MAX_BACKOFF_SECONDS = 300.0
CONFLICT_ATTEMPTS = 3

Key = tuple[str, str, str]
SpecT = TypeVar("SpecT", bound=ApiModel)
StatusT = TypeVar("StatusT", bound=ResourceStatus[Any])
Derive = Callable[[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]], JobOutcome]
"""A Job's outcome from the Job and its pods (job_outcome for the runner; command_outcome for a user image)."""


@dataclass(frozen=True)
class Opened(Generic[SpecT, StatusT]):
    """A resource as the shared opening read and validated it."""

    body: dict[str, Any]
    owner: Owner
    spec: SpecT
    status: StatusT


@dataclass(frozen=True)
class Controller(Generic[SpecT, StatusT]):
    """One kind's reconcile and how the shared opening reads it."""

    kind: str
    spec: type[SpecT]
    status: type[StatusT]
    reconcile: Callable[[Opened[SpecT, StatusT]], None]
    done_when_terminal: bool = True
    """Skip the reconcile of a resource in a terminal phase (False: the kind decides, e.g. a new revision)."""
    finished: Callable[[dict[str, Any], StatusT], None] = metrics.record_status
    """What a skipped, finished resource still reports (its metrics)."""
    recheck_finished: Callable[[Mapping[str, Any]], bool] = lambda body: False
    """Whether a finished resource is still re-checked every ``recheck_seconds`` (e.g. a ConfigMap source)."""
_failing_guard = threading.Lock()
_failing_since: dict[Key, float] = {}
"""When each resource's current run of retried errors began (monotonic seconds); cleared on success."""


def backoff(retry: int) -> float:
    """Seconds before the next attempt after ``retry`` failed ones (5 s doubling, at most 5 minutes)."""
    return float(min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** min(retry, 10)))


def involved(owner: Owner) -> dict[str, Any]:
    """The involvedObject of an Event about a resource."""
    from dbops.api.base import API_VERSION

    return {"apiVersion": API_VERSION, "kind": owner.kind, "namespace": owner.namespace, "name": owner.name,
            "uid": owner.uid}


def own_job(namespace: str, name: str, *, strict: bool = True) -> dict[str, Any] | None:
    """The Job dbops made under that name, or None. A Job of that name that dbops did not make is never read as
    ours (its outcome would be reported as our work): strict, it fails the resource JobNameConflict; else it is
    treated as missing (deletion goes on). The name holds a hash of the resource's uid, so another dbops
    resource's Job cannot take it; creating it checks the owner's uid (effects.owned_by). A running Job the
    Job watch showed lately is not read again (job_cache)."""
    cached = JOBS.running(namespace, name)
    if cached is not None:
        return cached
    job = kube_jobs.get_job(namespace, name)
    if job is None:
        JOBS.gone(namespace, name)
        return None
    if ((job.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) == MANAGER:
        JOBS.seen(job)
        return job
    if not strict:
        return None
    raise errors.PermanentError(f"Job {name} already exists and was not made by dbops (no {MANAGED_BY}={MANAGER} "
                                "label): delete or rename that Job, then re-create this resource",
                                reason="JobNameConflict")


def read_job(namespace: str, name: str, derive: Derive = job_outcome, *, strict: bool = True) -> JobOutcome:
    """The outcome of one Job by ``derive`` (the runner's result, or a user image's exit code); its pods are read
    once it finished, or while none of them is ready: a pod waiting for its PersistentVolumeClaim, its image or
    its configuration shows on the resource, and fails it when it cannot start (see pod_start)."""
    from dbops.controller.config import CONFIG

    job = own_job(namespace, name, strict=strict)
    state = job_state(job)
    if state in ("Succeeded", "Failed") or (
            job is not None and state == "Running" and not (job.get("status") or {}).get("ready")):
        pods = kube_jobs.job_pods(namespace, name)
        return with_start_problem(derive(job, pods), name, pods, now=datetime.now(UTC),
                                  grace=CONFIG.start_grace_seconds)
    return derive(job, [])


def require_secrets(namespace: str, selectors: Iterable[SecretKeySelector]) -> None:
    """Raise MissingReferenceError unless every referenced Secret key exists (a Secret read lately with every
    key wanted of it is not read again, objects.has_secret_keys)."""
    cache: dict[str, set[str] | None] = {}
    selectors = list(selectors)
    wanted: dict[str, set[str]] = {}
    for selector in selectors:
        wanted.setdefault(selector.name, set()).add(selector.key)
    for secret, names in wanted.items():
        if objects.has_secret_keys(namespace, secret, names):
            cache[secret] = names
    for selector in selectors:
        if selector.name not in cache:
            cache[selector.name] = objects.secret_keys(namespace, selector.name)
        keys = cache[selector.name]
        if keys is None:
            raise errors.MissingReferenceError(f"Secret {selector.name} not found")
        if selector.key not in keys:
            raise errors.MissingReferenceError(f"Secret {selector.name} has no key {selector.key}")


def write_status(owner: Owner, body: Mapping[str, Any], decision: Decision) -> None:
    """Patch the status when it changed (guarded by resourceVersion) and emit the decision's Events."""
    new = decision.status.to_wire()
    old = body.get("status") or {}
    if new != {k: v for k, v in old.items() if k in new} or set(new) - set(old):
        objects.patch_status(owner.kind, owner.namespace, owner.name, new,
                             resource_version=body["metadata"].get("resourceVersion"))
        held = ((body.get("spec") or {}).get("jobTemplate") or {}).get("ttlSecondsAfterFinished")
        if decision.status.is_terminal and held is not None:  # the results are in status: the ttl may run now
            effects.release_jobs(owner)
    for event in decision.events:
        events.emit(involved(owner), event.type, event.reason, event.message)
    metrics.record_transition(body, decision.status)
    if decision.requeue_after is not None:
        REQUEUE.after((owner.kind, owner.namespace, owner.name), decision.requeue_after)
    if decision.events:
        logger.info("%s %s/%s is %s: %s", owner.kind, owner.namespace, owner.name, decision.status.phase,
                    redact(decision.status.message))


def report_problem(owner: Owner, body: Mapping[str, Any], status: ResourceStatus[Any], reason: str, message: str,
                   *, terminal: bool = False) -> None:
    """Show a problem in the Ready condition (and, when terminal, Failed=True) and as a Warning Event, once."""
    message = redact(message)
    before = status.condition("Ready")
    if terminal:
        if status.is_terminal:
            return
        status.mark_failed(reason, message, generation=owner.generation)
    elif not status.is_terminal:
        if before is not None and before.reason == reason and before.message == message:
            return
        status.mark_progressing(status.phase, reason, message, generation=owner.generation)
    else:
        return
    decision = Decision(status)
    decision.event("Warning", reason, message)
    write_status(owner, body, decision)


def invalid_spec(error: ValidationError) -> errors.InvalidSpecError:
    """The InvalidSpec error for a spec pydantic refused (the API server admitted it)."""
    return errors.InvalidSpecError("invalid spec: " + "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]))


def stalled_seconds(key: Key) -> float:
    """Seconds since the resource's current run of retried errors began (0 on the first)."""
    now = time.monotonic()
    with _failing_guard:
        return now - _failing_since.setdefault(key, now)


def recovered(key: Key) -> None:
    """A reconcile succeeded, or the resource is gone: forget its retried errors."""
    with _failing_guard:
        _failing_since.pop(key, None)


def settle(owner: Owner, body: Mapping[str, Any], status: ResourceStatus[Any], error: Exception, retry: int) -> None:
    """Show an error on the resource by what it is; raise kopf.TemporaryError when it will be retried."""
    from dbops.controller.config import CONFIG

    key = (owner.kind, owner.namespace, owner.name)
    message = redact(str(error))
    if isinstance(error, errors.PermanentError) and not isinstance(error, errors.MissingReferenceError):
        logger.warning("%s %s/%s failed: %s: %s", owner.kind, owner.namespace, owner.name, error.reason, message)
        report_problem(owner, body, status, error.reason, message, terminal=True)
        recovered(key)
        return
    waited = stalled_seconds(key)
    if isinstance(error, errors.MissingReferenceError):
        if waited >= CONFIG.stall_seconds:
            report_problem(owner, body, status, error.reason, f"{message} (for {waited:.0f}s)", terminal=True)
            recovered(key)
            return
        report_problem(owner, body, status, error.reason, message)  # shown at once, re-checked with backoff
        raise kopf.TemporaryError(message, delay=backoff(retry))
    reason = error.reason if isinstance(error, errors.DbopsError) else "InternalError"
    logger.warning("%s %s/%s will be retried: %s", owner.kind, owner.namespace, owner.name, message,
                   exc_info=not isinstance(error, errors.DbopsError))
    if waited >= CONFIG.stall_seconds:
        report_problem(owner, body, status, reason, f"retrying for {waited:.0f}s: {message}")
    raise kopf.TemporaryError(message, delay=min(backoff(retry), 30.0))


def recheck_later(controller: Controller[Any, Any], body: Mapping[str, Any]) -> None:
    """Look at an unfinished resource again after ``recheck_seconds`` even without an event.

    One entry in the requeue heap per resource, not a Kopf timer: a timer is two asyncio tasks per resource and
    keeps the resource's whole body alive (about 20 KiB each, see bench/README.md, P7).
    """
    from dbops.controller.config import CONFIG

    unfinished = (body.get("status") or {}).get("phase") not in TERMINAL_PHASES
    if CONFIG.recheck_seconds > 0 and (unfinished or controller.recheck_finished(body)):
        metadata = body["metadata"]
        REQUEUE.recheck((controller.kind, str(metadata["namespace"]), str(metadata["name"])), CONFIG.recheck_seconds)


def run(controller: Controller[Any, Any], namespace: str, name: str, retry: int,
        listed: Mapping[str, Any] | None = None) -> None:
    """The shared opening (read, validate, stop if finished), the kind's reconcile, and every error turned into
    a condition, an Event or a Kopf retry.

    ``listed``: the object as the caller just read it (Kopf's re-list at start-up), used instead of a first GET:
    a restart then costs one request less per resource (bench/README.md, P8). A stale one is harmless: the status
    patch is guarded by its resourceVersion, and a conflict reads the object again."""
    from dbops.controller import locks

    kind = controller.kind
    key = (kind, namespace, name)
    with metrics.reconcile_timer(kind), locks.hold(kind, namespace, name):
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                body = dict(listed) if attempt == 0 and listed is not None else objects.get(kind, namespace, name)
            except kube_session.ApiError as error:
                raise kopf.TemporaryError(redact(str(error)), delay=min(backoff(retry), 30.0)) from None
            if body is None or body["metadata"].get("deletionTimestamp"):
                recovered(key)
                return
            recheck_later(controller, body)
            owner = Owner.from_body(body)
            try:
                status = controller.status.model_validate(body.get("status") or {})
                if controller.done_when_terminal and status.is_terminal:
                    controller.finished(body, status)
                    recovered(key)
                    return
                spec = controller.spec.model_validate(body.get("spec") or {})
                controller.reconcile(Opened(body, owner, spec, status))
            except kube_session.ApiError as error:
                if error.status == kube_session.CONFLICT and attempt < CONFLICT_ATTEMPTS - 1:
                    continue  # the resource changed under us: read it again
                problem: Exception = error
            except ValidationError as error:
                problem = invalid_spec(error)
            except kopf.TemporaryError:
                raise
            except Exception as error:
                problem = error
            else:
                recovered(key)
                return
            try:
                current = controller.status.model_validate(body.get("status") or {})
            except ValidationError:
                current = controller.status()
            try:
                settle(owner, body, current, problem, retry)
            except kube_session.ApiError as error:  # the report itself failed (gone, conflict, unreachable)
                raise kopf.TemporaryError(redact(str(error)), delay=min(backoff(retry), 30.0)) from None
            return


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop every per-resource record of a deleted resource (lock, retried errors, phase gauge)."""
    from dbops.controller import locks

    locks.forget(kind, namespace, name)
    recovered((kind, namespace, name))
    REQUEUE.forget((kind, namespace, name))
    metrics.forget(kind, namespace, name)


def role_of(job: Mapping[str, Any]) -> str:
    """The dbops role label of a Job."""
    return str(((job.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL, ""))
