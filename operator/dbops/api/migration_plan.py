"""status.plan of a DatabaseMigration: what a run would do, and where its complete report is."""

from __future__ import annotations

from pydantic import Field

from dbops.api.base import ApiModel
from dbops.api.migration_command_plan import CommandPlanReport


class PlanReport(ApiModel):
    """Where the complete plan report is (every lint finding, every pending version; command mode: the plan
    command's whole output), or why it is not."""

    available: bool = False
    """Whether the ConfigMap holds the complete report for this plan."""
    config_map: str = ""
    """The plan ConfigMap holding it (in the migration's namespace): `<migration>-plan-<hash>`, immutable."""
    key: str = ""
    """Its key with the report: report.json (findings under .plan.lint), or plan.txt in command mode."""
    findings_key: str = ""
    """Its key with the findings as text, one a line (SQL sources)."""
    findings: int = 0
    """How many lint findings the plan has in all."""
    pending: int = 0
    """How many versions are pending in all."""
    sha256: str = ""
    """sha256 of the report JSON."""
    size_bytes: int = 0
    """Size of the report JSON."""
    message: str = ""
    """Why the report is not available (or where to read it)."""


class MigrationPlan(ApiModel):
    """What a run would do."""

    hash: str = ""
    """Stable hash of the plan; approve it with approval.approvedPlanHash."""
    pending: list[str] = Field(default_factory=list)
    """Pending versions, in order (command mode: Django's app.name migrations or Alembic's revisions, at most 100)."""
    lint: list[str] = Field(default_factory=list)
    """Lint findings (the first 100; a last line says how many more and where they are)."""
    destructive: bool = False
    """Whether the plan drops or rewrites data."""
    report: PlanReport | None = None
    """Where the complete report is (every finding, every pending version), or why it is not available."""
    command: CommandPlanReport | None = None
    """Command mode: the framework's plan (its output, operations, hash); hash above then covers it and the spec."""

    @property
    def pending_count(self) -> int:
        """How many versions are pending in all (the status list may be capped)."""
        return self.report.pending if self.report is not None else len(self.pending)
