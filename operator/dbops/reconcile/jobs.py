"""What a finished or running Job says: its state and the runner's JSON result from the pod."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dbops.redaction import redact

JobState = Literal["Missing", "Running", "Succeeded", "Failed"]
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class JobOutcome:
    """The state of one Job and, once it finished, the runner's result."""

    state: JobState
    result: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        """Whether the Job reached Succeeded or Failed."""
        return self.state in ("Succeeded", "Failed")


MISSING = JobOutcome("Missing")


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def job_state(job: Mapping[str, Any] | None) -> JobState:
    """Missing, Running, Succeeded or Failed from a Job's conditions."""
    if job is None:
        return "Missing"
    if _condition(job, "Complete") is not None:
        return "Succeeded"
    if _condition(job, "Failed") is not None:
        return "Failed"
    return "Running"


def termination_message(pods: Sequence[Mapping[str, Any]], *, want_success: bool) -> str | None:
    """The termination message of the most relevant terminated runner container among a Job's pods."""
    candidates: list[tuple[str, int, str]] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if not terminated:
                continue
            exit_code = int(terminated.get("exitCode", -1))
            finished = str(terminated.get("finishedAt") or "")
            candidates.append((finished, exit_code, str(terminated.get("message") or "")))
    if want_success:
        successes = [c for c in candidates if c[1] == 0]
        candidates = successes or candidates
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])[2]


def parse_result(message: str | None) -> dict[str, Any]:
    """The runner's JSON result from a termination message ({} when it is not JSON, e.g. a log tail)."""
    if not message:
        return {}
    try:
        document = json.loads(message)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


VOLUME_NOT_READY = "VolumeNotReady"


def volume_wait(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a Job's pending pod waits for its PersistentVolumeClaim (missing or unbound), or None.

    The scheduler says so in PodScheduled (``persistentvolumeclaim "x" not found``, ``pod has unbound immediate
    PersistentVolumeClaims``); a kubelet in a waiting container's message.
    """
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase", "Pending") != "Pending":
            continue
        messages = [str(c.get("message") or "") for c in status.get("conditions") or []
                    if c.get("type") == "PodScheduled" and c.get("status") == "False"]
        messages += [str(((c.get("state") or {}).get("waiting") or {}).get("message") or "")
                     for c in status.get("containerStatuses") or []]
        for message in messages:
            lowered = message.lower()
            if "persistentvolumeclaim" in lowered or "persistent volume" in lowered:
                return redact(message)[:MAX_MESSAGE]
    return None


def job_outcome(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> JobOutcome:
    """The outcome of a Job from its conditions and its pods (termination messages; a running Job's pod
    waiting for its volume)."""
    state = job_state(job)
    if job is None or state == "Missing":
        return JobOutcome(state)
    if state == "Running":
        waiting = volume_wait(pods)
        return JobOutcome(state, reason=VOLUME_NOT_READY, message=waiting) if waiting else JobOutcome(state)
    raw = termination_message(pods, want_success=state == "Succeeded")
    result = parse_result(raw)
    if state == "Succeeded":
        return JobOutcome(state, result, "Succeeded", redact(str(result.get("message") or "")))
    condition = _condition(job, "Failed") or {}
    reason = str(result.get("reason") or condition.get("reason") or "JobFailed")
    message = str(result.get("message") or "")
    if not message and raw:
        message = raw.strip().splitlines()[-1] if raw.strip() else ""
    message = message or str(condition.get("message") or "the Job failed")
    return JobOutcome(state, result, reason, redact(message)[:MAX_MESSAGE])
