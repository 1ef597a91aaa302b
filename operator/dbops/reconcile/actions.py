"""What a reconcile decided to do: objects to create or delete, Events to emit, when to look again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dbops.api.status import ResourceStatus

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the resource."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class JobRequest:
    """A Job to start: its role (backup, verify, restore, plan, apply…) and what its builder needs."""

    role: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


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

    status: ResourceStatus
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
