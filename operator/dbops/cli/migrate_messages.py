"""The one-line messages of ``dbops migrate`` results (versions, what was applied, the framework's history)."""

from __future__ import annotations

from typing import Any

from dbops.runner.migrations import session


def history_note(change: dict[str, Any] | None) -> str:
    if not change:
        return ""
    if "added" in change:
        return f" ({change['framework']}: {len(change['added'])} applied, {len(change['removed'])} unapplied)"
    return f" ({change['framework']}: revision {change['before']} → {change['after']})"


def version(version: str | None) -> str:
    """``version 0003``, or ``no version`` for an empty history (never "version None")."""
    return f"version {version}" if version else "no version"


def apply_message(outcome: session.RunOutcome) -> str:
    """``applied 3 migrations; version 0001 → 0004``, or for a dry run what would happen and what ran."""
    report = outcome.report
    applied = report.applied if report else []
    if report is None or not report.dry_run:
        verb = "rolled back" if outcome.plan is not None and outcome.plan.direction == "down" else "applied"
        return (f"{verb} {len(applied)} migrations; {version(outcome.previous_version)} → "
                f"{version(outcome.current_version)}")
    pending = outcome.plan.pending if outcome.plan else []
    target = pending[-1] if pending else outcome.previous_version
    if outcome.plan is not None and outcome.plan.direction == "down":
        target = outcome.plan.target_version
    message = (f"dry run: would apply {len(pending)} migrations ({version(outcome.previous_version)} → "
               f"{version(target)}); {len(applied)} ran in a rolled-back transaction")
    if report.skipped:
        message += f", {len(report.skipped)} no-transaction not run ({', '.join(report.skipped)})"
    if report.sequences_not_restored:
        message += f"; sequences advanced by others meanwhile, left as they are: {', '.join(report.sequences_not_restored)}"
    return message
