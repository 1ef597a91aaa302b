"""What a framework command Job says: exit 0 is applied, anything else MigrationFailed with its output's tail.

The command runs in the user's image, so its termination message is not the runner's JSON: it is
whatever the command wrote to /dev/termination-log or, with ``FallbackToLogsOnError``, the tail of
its log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dbops.reconcile.jobs import MAX_MESSAGE, JobOutcome, job_state
from dbops.redaction import redact

MAX_TAIL_LINES = 20
SUCCEEDED_MESSAGE = "migration command succeeded"


def output_tail(text: str, *, max_lines: int = MAX_TAIL_LINES, max_chars: int = MAX_MESSAGE) -> str:
    """The last non-empty lines of a command's output, joined with " | ", at most max_chars (cut at the front)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()][-max_lines:]
    tail = " | ".join(lines)
    return tail if len(tail) <= max_chars else "…" + tail[-(max_chars - 1):]


def last_termination(pods: Sequence[Mapping[str, Any]]) -> tuple[int, str] | None:
    """(exit code, message) of the most recently terminated container among the pods."""
    latest: tuple[str, int, str] | None = None
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if not terminated:
                continue
            candidate = (str(terminated.get("finishedAt") or ""), int(terminated.get("exitCode", -1)),
                         str(terminated.get("message") or ""))
            if latest is None or candidate[0] >= latest[0]:
                latest = candidate
    return None if latest is None else (latest[1], latest[2])


def command_outcome(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> JobOutcome:
    """The outcome of a command Job: Succeeded on exit 0, else Failed with reason MigrationFailed (redacted)."""
    state = job_state(job)
    if job is None or state in ("Missing", "Running"):
        return JobOutcome(state)
    if state == "Succeeded":
        return JobOutcome(state, {}, "Succeeded", SUCCEEDED_MESSAGE)
    message = failure_message(failed_condition(job), pods, subject="the migration command ")
    return JobOutcome("Failed", {}, "MigrationFailed", message)


def failed_condition(job: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Job's Failed=True condition ({} when it has none)."""
    conditions = (job.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"), {})


def failure_message(condition: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], subject: str = "") -> str:
    """Why a user-image Job failed: its exit code and redacted output tail, else the Job's condition."""
    terminated = last_termination(pods)
    if terminated is None:
        message = f"{subject}failed: {condition.get('message') or condition.get('reason') or 'Job failed'}"
    else:
        exit_code, output = terminated
        tail = output_tail(redact(output), max_chars=MAX_MESSAGE - 64)
        message = f"{subject}exited with code {exit_code}" + (f": {tail}" if tail else "")
    return redact(message)[:MAX_MESSAGE]
