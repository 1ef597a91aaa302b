"""Status shared by every kind: phase, conditions and the transitions that keep them consistent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import Field

from dbops.api.base import ApiModel

READY = "Ready"
FAILED = "Failed"
"""Condition True once the work ended without succeeding (Failed, RolledBack), for `kubectl wait` and Argo CD."""
TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "RolledBack"})
PENDING_PHASES = frozenset({"Pending", "Waiting", "AwaitingApproval"})
"""Phases in which no work has started yet (startedAt stays unset)."""

PhaseT = TypeVar("PhaseT", bound=str)
"""A kind's phases: a Literal type per kind, so mypy refuses a phase the kind does not have."""


def utcnow() -> datetime:
    """The current time in UTC, to the second (as Kubernetes stores it)."""
    return datetime.now(UTC).replace(microsecond=0)


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str
    """Condition type, e.g. Ready."""
    status: Literal["True", "False", "Unknown"]
    """Condition status."""
    reason: str
    """A CamelCase reason."""
    message: str = ""
    """A human-readable message."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: int | None = None
    """The generation this condition was computed for."""


class ResourceStatus(ApiModel, Generic[PhaseT]):
    """Phase, conditions and timings with transition methods; a terminal phase never regresses.

    Each kind names its phases (``ResourceStatus[BackupPhase]``); every kind has Pending and Failed, and the
    kinds that succeed have Succeeded (the transitions below enter those three)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    phase: PhaseT = "Pending"  # type: ignore[assignment]  # every kind's phases include Pending
    """Where the resource is in its life cycle."""
    observed_generation: int | None = None
    """The spec generation this status describes."""
    conditions: list[Condition] = Field(default_factory=list)
    """Conditions; Ready is True once the work succeeded."""
    message: str = ""
    """The latest human-readable message."""
    started_at: datetime | None = None
    """When the work started."""
    completed_at: datetime | None = None
    """When the work finished."""
    duration_seconds: float | None = None
    """Wall time of the work."""

    @property
    def is_terminal(self) -> bool:
        """Whether the phase is final (Succeeded, Failed or RolledBack)."""
        return self.phase in TERMINAL_PHASES

    def condition(self, type_: str) -> Condition | None:
        """The condition of a type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)

    def set_condition(
        self, type_: str, status: Literal["True", "False", "Unknown"], reason: str, message: str = "",
        *, generation: int | None = None, now: datetime | None = None,
    ) -> None:
        """Set a condition, keeping lastTransitionTime when its status does not change."""
        now = now or utcnow()
        existing = self.condition(type_)
        transition = existing.last_transition_time if existing and existing.status == status else now
        updated = Condition(
            type=type_, status=status, reason=reason, message=message,
            last_transition_time=transition, observed_generation=generation,
        )
        self.conditions = [c for c in self.conditions if c.type != type_] + [updated]

    def mark_progressing(
        self, phase: PhaseT, reason: str, message: str, *, generation: int | None = None, now: datetime | None = None
    ) -> bool:
        """Enter a non-terminal phase (Running, Waiting, BackingUp…); False when already terminal."""
        if self.is_terminal:
            return False
        now = now or utcnow()
        self.phase = phase
        self.message = message
        self.observed_generation = generation
        if self.started_at is None and phase not in PENDING_PHASES:
            self.started_at = now
        self.set_condition(READY, "False", reason, message, generation=generation, now=now)
        self.conditions = [c for c in self.conditions if c.type != FAILED]  # a new run has not failed (yet)
        return True

    def mark_succeeded(
        self, message: str, *, generation: int | None = None, now: datetime | None = None, **details: Any
    ) -> bool:
        """Enter Succeeded with Ready=True and the given details; False when already terminal."""
        return self._finish("Succeeded", "True", "Succeeded", message, generation, now, details)

    def mark_failed(
        self, reason: str, message: str, *, generation: int | None = None, now: datetime | None = None,
        **details: Any,
    ) -> bool:
        """Enter Failed with Ready=False and a reason; False when already terminal."""
        return self._finish("Failed", "False", reason, message, generation, now, details)

    def _finish(
        self, phase: Literal["Succeeded", "Failed"], ready: Literal["True", "False"], reason: str, message: str,
        generation: int | None, now: datetime | None, details: dict[str, Any],
    ) -> bool:
        if self.is_terminal:
            return False
        now = now or utcnow()
        for name, value in details.items():
            setattr(self, name, value)
        self.phase = cast(PhaseT, phase)  # a phase every kind that reaches it has (validated on assignment)
        self.message = message
        self.observed_generation = generation
        self.started_at = self.started_at or now
        self.completed_at = now
        self.duration_seconds = max(0.0, (now - self.started_at).total_seconds())
        self.set_condition(READY, ready, reason, message, generation=generation, now=now)
        if phase == "Failed":
            self.set_condition(FAILED, "True", reason, message, generation=generation, now=now)
        return True


class StartedJob(ApiModel):
    """A Job the operator started for this resource (or run), recorded before its result is read."""

    name: str
    """The Job's name."""
    role: str
    """What it does (backup, verify, restore, plan, check, apply, command, ...)."""
    uid: str | None = None
    """The Job's uid, once created."""


MAX_STARTED_JOBS = 64
MAX_PREVIOUS_ATTEMPTS = 10
RETRY_ANNOTATION = "dbops.io/retry"
"""Set to a new token (any string, e.g. a timestamp) to run a Failed or RolledBack resource again."""


class PreviousAttempt(ApiModel):
    """How an earlier run of the resource ended (kept when a retry or a new revision started another)."""

    attempt: int
    """Its number (1 for the first run)."""
    phase: str
    """How it ended (Failed, RolledBack, Succeeded), or the phase it was in when a new revision replaced it."""
    reason: str = ""
    """The reason of its Ready condition (JobLost, PlanChanged, MigrationFailed …)."""
    message: str = ""
    """Its last message (cut to 1024 characters)."""
    started_at: datetime | None = None
    """When its work started."""
    finished_at: datetime | None = None
    """When it ended."""
    jobs: list[str] = Field(default_factory=list, max_length=MAX_STARTED_JOBS)
    """The Jobs it started (their names; the Jobs stay until the resource is deleted or their ttl runs)."""
    children: list[str] = Field(default_factory=list, max_length=8)
    """The dbops resources it created (pre-migration or safety backup, rollback restore): kept, not reused."""
    source_hash: str | None = None
    """The revision it ran (DatabaseMigration)."""
    ended_by: Literal["Retry", "NewRevision"] = "Retry"
    """What started the next run: a retry token (dbops.io/retry) or a change of the migration's content or spec."""
    retry_token: str | None = None
    """The dbops.io/retry token that started the next run."""


class JobStatus(ResourceStatus[PhaseT], Generic[PhaseT]):
    """The status of a kind whose work runs in Jobs: the Job currently doing it."""

    job_name: str | None = None
    """The current Job."""
    started_jobs: list[StartedJob] = Field(default_factory=list, max_length=MAX_STARTED_JOBS)
    """The Jobs started so far (for a migration: in this run). A Job listed here that no longer exists before its
    result was read is lost: the operator never starts it again when its work cannot safely run twice."""

    attempts: int = 0
    """The number of the current run: 1 for the first, one more for each retry (dbops.io/retry) and, for a
    DatabaseMigration, for each change of its content or spec that replaced a run. 0 before the first run."""
    last_retry_token: str | None = None
    """The last dbops.io/retry token the operator acted on (started a retry, or ignored and said why in a
    RetryIgnored Event): the annotation starts a new run only while its value differs from this."""
    previous_attempts: list[PreviousAttempt] = Field(default_factory=list, max_length=MAX_PREVIOUS_ATTEMPTS)
    """The earlier runs, oldest first (at most 10 kept)."""

    @property
    def attempt(self) -> int:
        """The current run's number (1 before the first run recorded one)."""
        return max(1, self.attempts)

    def started(self, name: str) -> StartedJob | None:
        """The record of a started Job of that name."""
        return next((job for job in self.started_jobs if job.name == name), None)

    def record_started(self, name: str, role: str) -> None:
        """Record that a Job was asked for (the oldest records give way beyond MAX_STARTED_JOBS)."""
        if self.started(name) is None:
            self.started_jobs = [*self.started_jobs, StartedJob(name=name, role=role)][-MAX_STARTED_JOBS:]
