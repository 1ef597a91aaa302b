"""What a framework command recorded in its own history (command mode): Django rows, Alembic revision …"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from dbops.api.base import ApiModel

HistoryEntry = Annotated[str, StringConstraints(max_length=512)]


class FrameworkHistory(ApiModel):
    """One framework's history before and after the command, as the framework itself records it."""

    framework: str
    """django, alembic, flyway or golang-migrate (unknown when no snapshot was taken)."""
    added: Annotated[list[HistoryEntry], Field(max_length=100)] = Field(default_factory=list)
    """Entries the command added (Django: app.name of each migration applied), at most 20 shown."""
    removed: Annotated[list[HistoryEntry], Field(max_length=100)] = Field(default_factory=list)
    """Entries the command removed (Django: migrations unapplied, e.g. by ``migrate app zero``)."""
    added_count: int = 0
    """How many entries were added (all of them, also those not shown)."""
    removed_count: int = 0
    """How many entries were removed."""
    before: str | None = None
    """Alembic: the revision before the command."""
    after: str | None = None
    """Alembic: the revision after the command."""
    note: str = ""
    """What is not shown, and where the complete lists are."""

    def summary(self) -> str:
        """``django: 2 applied, 0 unapplied`` or ``alembic: revision a → b`` (for messages)."""
        if self.before is not None or self.after is not None:
            return f"{self.framework}: revision {self.before} → {self.after}"
        if self.note and not (self.added_count or self.removed_count):
            return ""
        return f"{self.framework}: {self.added_count} applied, {self.removed_count} unapplied"
