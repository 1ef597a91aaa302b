"""Running a finished resource again on request: the dbops.io/retry annotation against status.lastRetryToken.

In the style of Flux's ``reconcile.fluxcd.io/requestedAt``: the value is an opaque token; a value the operator has
not acted on yet (not ``status.lastRetryToken``) starts a new run of a Failed or RolledBack resource. A Succeeded
resource is never run again by it (a Normal RetryIgnored Event says why); a running one acts on it once it ended.
A token already on the resource when it is first seen belongs to its first run (a manifest re-applied from git
keeps its annotation: it must not retry a failure nobody looked at).

A retry is a fresh run: new Job and child names (``run_parts``: deterministic per attempt, so an operator killed
between creating a Job and writing status adopts it instead of starting a second one), every step again (plan,
approval, lock, pre-checks, pre-backup). The pass that starts it only writes the new attempt to status; the next
pass, naming its Jobs from that status, creates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from dbops.api.status import (
    MAX_PREVIOUS_ATTEMPTS,
    READY,
    RETRY_ANNOTATION,
    TERMINAL_PHASES,
    JobStatus,
    PreviousAttempt,
)
from dbops.reconcile.actions import Decision

S = TypeVar("S", bound=JobStatus[Any])
MAX_TOKEN_CHARS = 256
RESTARTED_SECONDS = 1.0
"""How soon the pass after a retry's status write looks again (to create the new attempt's first Job)."""
RETRYABLE_PHASES = frozenset({"Failed", "RolledBack"})


def token_of(body: Mapping[str, Any]) -> str | None:
    """The resource's retry token (cut to 256 characters), or None without one."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(RETRY_ANNOTATION)
    return str(value)[:MAX_TOKEN_CHARS] if value else None


def requested(token: str | None, status: JobStatus[Any]) -> bool:
    """Whether the token is one the operator has not acted on yet."""
    return bool(token) and token != status.last_retry_token


def pending(body: Mapping[str, Any]) -> bool:
    """Whether a finished resource carries a token not acted on yet (the handler then reconciles it)."""
    token = token_of(body)
    status = body.get("status") or {}
    return bool(token) and status.get("phase") in TERMINAL_PHASES and token != status.get("lastRetryToken")


def run_parts(attempt: int) -> tuple[int, ...]:
    """What a Job or child name adds for this attempt: nothing for the first (the names runs always had)."""
    return () if attempt <= 1 else (attempt,)


def run_key(revision: str, attempt: int) -> str:
    """A migration run's naming key: its revision, and the attempt from the second on."""
    return revision if attempt <= 1 else f"{revision}.{attempt}"


def begin(status: JobStatus[Any], token: str | None) -> None:
    """An unfinished resource's pass: number its first run, and take a token that was there from the start."""
    if status.is_terminal:
        return
    if status.attempts == 0:
        status.attempts = 1
        if token and status.last_retry_token is None and not status.started_jobs:
            status.last_retry_token = token


def retry(status: S, token: str | None, fresh: Callable[[S], S], *, generation: int, now: datetime,
          ignored: str, children: Iterable[str | None] = (), source_hash: str | None = None) -> Decision | None:
    """A finished resource's answer to its token: None when there is nothing to act on; else the Decision that
    starts the next attempt (Failed, RolledBack) or records why not (Succeeded: a Normal RetryIgnored Event,
    ``ignored`` saying what to do instead). ``fresh`` gives the new run's status (what a kind keeps across runs);
    ``children`` are the dbops resources the ended run created (kept in its record, never reused)."""
    if not status.is_terminal or not requested(token, status):
        return None
    if status.phase not in RETRYABLE_PHASES:
        ignored_status = status.model_copy(deep=True)
        ignored_status.last_retry_token = token
        decision = Decision(ignored_status)
        decision.event("Normal", "RetryIgnored", f"retry {token!r} ignored: the resource is {status.phase} and a "
                       f"retry runs only a Failed or RolledBack one; {ignored}")
        return decision
    ready = status.condition(READY)
    record = PreviousAttempt(
        attempt=status.attempt, phase=str(status.phase), reason=ready.reason if ready else "",
        message=status.message[:1024], started_at=status.started_at, finished_at=status.completed_at,
        jobs=[job.name for job in status.started_jobs], children=[name for name in children if name][:8],
        source_hash=source_hash, ended_by="Retry", retry_token=token)
    new = fresh(status)
    new.attempts = status.attempt + 1
    new.last_retry_token = token
    new.previous_attempts = [*status.previous_attempts, record][-MAX_PREVIOUS_ATTEMPTS:]
    new.conditions = [c.model_copy() for c in status.conditions]
    message = (f"retry {token!r}: starting attempt {new.attempts} (attempt {record.attempt} ended {record.phase}: "
               f"{record.reason})")
    new.mark_progressing("Pending", "RetryRequested", message, generation=generation, now=now)  # drops Failed
    decision = Decision(new)
    decision.event("Normal", "RetryStarted", message)
    decision.requeue_after = RESTARTED_SECONDS
    return decision


def counted(status: JobStatus[Any]) -> bool:
    """Whether a run being replaced did something worth a number and a record (it ended, or started a Job)."""
    return status.attempts > 0 and (status.is_terminal or bool(status.started_jobs))


def superseded(status: S, fresh: S, token: str | None, *, source_hash: str | None,
               children: Iterable[str | None] = ()) -> S:
    """A migration's new revision: the new run's status (numbered by the caller; it takes the current token: a new
    run consumes it), the replaced run kept in previousAttempts (unless it never started: a revision changed while
    it waited for its window is not a run worth keeping)."""
    fresh.last_retry_token = token or status.last_retry_token
    fresh.previous_attempts = list(status.previous_attempts)
    if not counted(status):
        return fresh
    ready = status.condition(READY)
    record = PreviousAttempt(
        attempt=status.attempt, phase=str(status.phase), reason=ready.reason if ready else "",
        message=status.message[:1024], started_at=status.started_at, finished_at=status.completed_at,
        jobs=[job.name for job in status.started_jobs], children=[name for name in children if name][:8],
        source_hash=source_hash, ended_by="NewRevision")
    fresh.previous_attempts = [*fresh.previous_attempts, record][-MAX_PREVIOUS_ATTEMPTS:]
    return fresh
