"""Why a running Job's pod has not started: a wait to show, or (after a grace period) a failure naming the cause."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dbops.reconcile.jobs import JobOutcome
from dbops.redaction import redact

IMAGE_PULL_FAILED = "ImagePullFailed"
CONTAINER_CONFIG_ERROR = "ContainerConfigError"
POD_UNSCHEDULABLE = "PodUnschedulable"
START_FAILURES = (IMAGE_PULL_FAILED, CONTAINER_CONFIG_ERROR)
"""Reasons of a Job outcome failed because its pod could not start (the Job is then deleted)."""

DEFAULT_START_GRACE_SECONDS = 180.0
"""How long a pod may wait on its image or its configuration before the Job is failed (a registry blip, a Secret
created a moment late must not fail a backup; a typo in an image tag must not wait forever)."""

# The kubelet's waiting reasons that only a change (an image, a Secret) can end, and the outcome reason each gives.
# InvalidImageName and ErrImageNeverPull cannot get better by themselves: they fail without waiting.
IMMEDIATE = {"InvalidImageName": IMAGE_PULL_FAILED, "ErrImageNeverPull": IMAGE_PULL_FAILED}
AFTER_GRACE = {"ErrImagePull": IMAGE_PULL_FAILED, "ImagePullBackOff": IMAGE_PULL_FAILED,
               "CreateContainerConfigError": CONTAINER_CONFIG_ERROR, "CreateContainerError": CONTAINER_CONFIG_ERROR}
MAX_MESSAGE = 512


@dataclass(frozen=True)
class StartProblem:
    """A pod that has not started: the outcome reason, a message naming container, image and cause, and whether
    the wait is over (the Job is to fail) or still within its grace (shown while waiting)."""

    reason: str
    message: str
    terminal: bool


def _age(pod: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds since the pod was created (None when the timestamp is absent or unreadable)."""
    stamp = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - created).total_seconds()


def _waiting(pod: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(container, image, reason, message) of every waiting container (init containers first); the image as the
    pod's spec names it (what the Job asked for), else as its status does."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    images = {str(c.get("name")): str(c.get("image") or "")
              for key in ("initContainers", "containers") for c in spec.get(key) or []}
    found = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                name = str(container.get("name") or "?")
                found.append((name, images.get(name) or str(container.get("image") or ""),
                              str(waiting["reason"]), str(waiting.get("message") or "")))
    return found


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            return str(condition.get("message") or "no node fits the pod")
    return None


def start_problem(job_name: str, pods: Sequence[Mapping[str, Any]], *, now: datetime,
                  grace: float = DEFAULT_START_GRACE_SECONDS) -> StartProblem | None:
    """Why the Job's pending pod has not started, or None (no pod yet, or it is starting normally).

    A waiting reason in IMMEDIATE is terminal at once; one in AFTER_GRACE once the pod is older than ``grace``
    seconds (until then a non-terminal problem to show); an unschedulable pod is never terminal here (capacity may
    come: an autoscaler, a finished Job; the Job's own activeDeadlineSeconds bounds it when the user set one).
    """
    for pod in pods:
        if (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            continue
        age = _age(pod, now)
        for container, image, waiting, message in _waiting(pod):
            reason = IMMEDIATE.get(waiting) or AFTER_GRACE.get(waiting)
            if reason is None:
                continue
            terminal = waiting in IMMEDIATE or (age is not None and age >= grace)
            text = (f"Job {job_name} container {container} (image {image or '?'}) cannot start: "
                    f"{waiting}: {message or 'no message'}")
            if not terminal:
                text += f" (failing after {int(grace)}s)"
            return StartProblem(reason, redact(text)[:MAX_MESSAGE], terminal)
        if (unschedulable := _unschedulable(pod)) is not None:
            return StartProblem(POD_UNSCHEDULABLE, redact(f"Job {job_name}'s pod cannot be scheduled: {unschedulable}")
                                [:MAX_MESSAGE], False)
    return None


def with_start_problem(outcome: JobOutcome, job_name: str, pods: Sequence[Mapping[str, Any]], *, now: datetime,
                       grace: float = DEFAULT_START_GRACE_SECONDS) -> JobOutcome:
    """A running Job's outcome with its pod's start problem: Failed (reason in START_FAILURES) once terminal, else
    still Running with the problem as reason and message to show; any other outcome as it is."""
    if outcome.state != "Running" or outcome.reason:
        return outcome
    problem = start_problem(job_name, pods, now=now, grace=grace)
    if problem is None:
        return outcome
    return JobOutcome("Failed" if problem.terminal else "Running", {}, problem.reason, problem.message)
