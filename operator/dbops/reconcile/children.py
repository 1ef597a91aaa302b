"""The observed state of child resources (backups, restores) that a parent waits for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbops.api.status import TERMINAL_PHASES


@dataclass(frozen=True)
class ChildState:
    """Phase and message of a child resource; phase "" when it does not exist."""

    name: str
    phase: str = ""
    message: str = ""
    reason: str = ""

    @property
    def exists(self) -> bool:
        """Whether the child exists."""
        return bool(self.phase)

    @property
    def finished(self) -> bool:
        """Whether the child reached a terminal phase."""
        return self.phase in TERMINAL_PHASES


def child_state(name: str, body: Mapping[str, Any] | None) -> ChildState:
    """The state of a child from its body (None when missing)."""
    if body is None:
        return ChildState(name)
    status = body.get("status") or {}
    ready: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ChildState(name, str(status.get("phase") or "Pending"), str(status.get("message") or ""),
                      str(ready.get("reason") or ""))
