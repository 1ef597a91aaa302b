"""A run's options and what it applied (``apply`` runs the plan with them; imported without it, P6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ApplyOptions:
    """Timeouts, retries and dry-run for one run."""

    lock_timeout: str = "5s"
    statement_timeout: str = "0"
    lock_retries: int = 3
    retry_backoff_seconds: float = 1.0
    dry_run: bool = False


@dataclass(frozen=True)
class AppliedMigration:
    """One migration that ran (or would run, in a dry run)."""

    version: str
    name: str
    direction: str
    duration_ms: int
    lock_retries: int = 0
    rebuilt: tuple[str, ...] = ()

    def as_result(self) -> dict[str, Any]:
        """camelCase form for the result JSON (``lockRetries``/``rebuiltIndexes`` only when there were any)."""
        result: dict[str, Any] = {"version": self.version, "name": self.name, "direction": self.direction,
                                  "durationMs": self.duration_ms}
        if self.lock_retries:
            result["lockRetries"] = self.lock_retries
        if self.rebuilt:
            result["rebuiltIndexes"] = list(self.rebuilt)
        return result


@dataclass
class ApplyReport:
    """What happened."""

    dry_run: bool
    applied: list[AppliedMigration] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sequences_not_restored: list[str] = field(default_factory=list)
