"""What a reconcile decided to do: objects to create or delete, Events to emit, when to look again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from dbops.api.common import Storage
from dbops.api.roles import JobRole
from dbops.api.status import ResourceStatus
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import JobOutcome

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the resource."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class NoParams:
    """The role needs nothing beyond the resource's spec (backup, plan, check, command)."""


@dataclass(frozen=True)
class ArtifactParams:
    """A stored backup to verify or delete."""

    artifact_dir: str


@dataclass(frozen=True)
class RestoreParams:
    """A stored backup to restore, and the storage holding it (typed, as the spec gave it)."""

    artifact_dir: str
    storage: Storage


@dataclass(frozen=True)
class ApplyParams:
    """The plan hash the apply Job must find again (approval), empty when no approval is needed."""

    expect_plan_hash: str = ""


@dataclass(frozen=True)
class RehearseParams:
    """The backup to restore the rehearsal copy from, the plan hash to find there, and the gates."""

    artifact_dir: str
    storage: Storage | None
    expect_plan_hash: str
    max_duration_seconds: float | None = None
    max_lock_bytes: int | None = None
    available_space_bytes: int | None = None


JobParams = NoParams | ArtifactParams | RestoreParams | ApplyParams | RehearseParams
P = TypeVar("P", NoParams, ArtifactParams, RestoreParams, ApplyParams, RehearseParams)


@dataclass(frozen=True)
class JobRequest:
    """A Job to start: its role and the parameter record its builder needs."""

    role: JobRole
    name: str
    params: JobParams = field(default_factory=NoParams)

    def expect(self, kind: type[P]) -> P:
        """The parameters, which must be of the given record type."""
        if not isinstance(self.params, kind):
            raise TypeError(f"{self.role} Job {self.name} carries {type(self.params).__name__}, not {kind.__name__}")
        return self.params


@dataclass(frozen=True)
class ChildRequest:
    """A child dbops resource to create (a safety or pre-migration backup, a rollback restore)."""

    kind: str
    name: str
    spec: dict[str, Any]
    owned: bool = True
    """Whether the child is garbage-collected with its parent."""


@dataclass
class Decision:
    """The outcome of one reconcile: the new status and the side effects that lead to it."""

    status: ResourceStatus[Any]
    jobs: list[JobRequest] = field(default_factory=list)
    """Jobs to create (AlreadyExists means adopt)."""
    children: list[ChildRequest] = field(default_factory=list)
    """Child dbops resources to create (AlreadyExists means adopt)."""
    create: list[dict[str, Any]] = field(default_factory=list)
    """Other objects to create (AlreadyExists means adopt), e.g. child DatabaseBackups."""
    apply: list[dict[str, Any]] = field(default_factory=list)
    """Objects to create or update to match (CronJobs, ConfigMaps, RBAC)."""
    delete: list[dict[str, Any]] = field(default_factory=list)
    """Objects to delete: {apiVersion, kind, namespace, name}."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Look again after this many seconds (while waiting for something that sends no event)."""

    def event(self, type_: EventType, reason: str, message: str) -> None:
        """Record an Event to emit."""
        self.events.append(Event(type_, reason, message))

    def job_pending(self, job: JobOutcome, request: JobRequest) -> bool:
        """Ask for the Job when it is missing; True until it has finished (the caller reports progress)."""
        if job.state == "Missing":
            self.jobs.append(request)
            return True
        return job.state == "Running"

    def child_pending(self, child: ChildState, request: ChildRequest) -> bool:
        """Ask for the child when it is missing; True until it reached a terminal phase."""
        if not child.exists:
            self.children.append(request)
            return True
        return not child.finished
