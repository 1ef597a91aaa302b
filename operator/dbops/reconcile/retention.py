"""Retention: which completed backups of a schedule to keep and which to prune (pure).

Rules, applied to backups newest first (times in UTC):

- ``keepLast``: the newest N backups.
- ``keepDaily`` / ``keepWeekly`` / ``keepMonthly``: the newest backup of each of the N most recent
  calendar days / ISO weeks / months that have a backup.
- ``maxAge`` (``30d``, ``720h``, ``2w``, ``1d12h``): a hard limit; a backup older than this is pruned
  even when a rule above would keep it. Without any keep rule, everything younger is kept.
- The newest backup is always kept, whatever the policy, so a schedule never loses its last backup.
- Backups without a completion time (still running) are always kept.
- An empty policy keeps everything.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, NamedTuple

from dbops.api import common, schedule


class BackupItem(NamedTuple):
    """One backup: its name and when it completed (None while it has not)."""

    name: str
    completed_at: datetime.datetime | None


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """How many backups to keep; zero or None disables a rule."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    max_age: datetime.timedelta | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> RetentionPolicy:
        """From the camelCase spec block ``{keepLast, keepDaily, keepWeekly, keepMonthly, maxAge}``."""
        spec = spec or {}
        max_age = spec.get("maxAge")
        return cls(
            keep_last=int(spec.get("keepLast") or 0),
            keep_daily=int(spec.get("keepDaily") or 0),
            keep_weekly=int(spec.get("keepWeekly") or 0),
            keep_monthly=int(spec.get("keepMonthly") or 0),
            max_age=parse_duration(max_age) if max_age else None,
        )

    @classmethod
    def from_model(cls, model: schedule.RetentionPolicy) -> RetentionPolicy:
        """From the API model of a schedule's ``spec.retention``."""
        return cls.from_spec(model.model_dump(by_alias=True, exclude_none=True))

    @property
    def has_keep_rules(self) -> bool:
        """Whether any count-based rule is set."""
        return any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly))


@dataclasses.dataclass(frozen=True)
class RetentionDecision:
    """The outcome: kept backups with the reasons, and the backups to prune (oldest first)."""

    keep: dict[str, list[str]]
    prune: list[str]


def parse_duration(text: str) -> datetime.timedelta:
    """Parse ``30d``, ``720h``, ``2w``, ``1d12h``, ``90m`` or ``45s`` into a timedelta (ValueError otherwise)."""
    return datetime.timedelta(seconds=common.parse_duration(text.strip()))


def _bucket_rule(
    ordered: list[BackupItem], count: int, bucket: Callable[[datetime.datetime], Hashable], label: str,
    keep: dict[str, list[str]],
) -> None:
    seen: list[Hashable] = []
    for item in ordered:
        assert item.completed_at is not None
        key = bucket(item.completed_at)
        if key in seen:
            continue
        if len(seen) == count:
            break
        seen.append(key)
        keep.setdefault(item.name, []).append(f"{label} {len(seen)}/{count}")


def select_backups_to_prune(
    backups: Iterable[BackupItem | tuple[str, datetime.datetime | None]],
    policy: RetentionPolicy,
    now: datetime.datetime,
) -> RetentionDecision:
    """Decide which backups to keep (with why) and which to prune, for a policy at time ``now``."""
    items = [BackupItem(*backup) for backup in backups]
    keep: dict[str, list[str]] = {}
    for item in items:
        if item.completed_at is None:
            keep.setdefault(item.name, []).append("not completed")
    done = sorted(
        (BackupItem(i.name, i.completed_at.astimezone(datetime.UTC)) for i in items if i.completed_at is not None),
        key=lambda i: (i.completed_at, i.name),
        reverse=True,
    )
    if not policy.has_keep_rules and policy.max_age is None:
        for item in done:
            keep.setdefault(item.name, []).append("no retention policy")
        return RetentionDecision(keep=keep, prune=[])

    if policy.has_keep_rules:
        for index, item in enumerate(done[: policy.keep_last]):
            keep.setdefault(item.name, []).append(f"last {index + 1}/{policy.keep_last}")
        if policy.keep_daily:
            _bucket_rule(done, policy.keep_daily, lambda t: t.date(), "daily", keep)
        if policy.keep_weekly:
            _bucket_rule(done, policy.keep_weekly, lambda t: t.isocalendar()[:2], "weekly", keep)
        if policy.keep_monthly:
            _bucket_rule(done, policy.keep_monthly, lambda t: (t.year, t.month), "monthly", keep)
    if policy.max_age is not None:
        cutoff = now.astimezone(datetime.UTC) - policy.max_age
        for item in done:
            assert item.completed_at is not None
            if item.completed_at < cutoff:
                keep.pop(item.name, None)
            elif not policy.has_keep_rules:
                keep.setdefault(item.name, []).append("younger than maxAge")
    if done and done[0].name not in keep:
        keep[done[0].name] = ["newest backup"]
    prune = [item.name for item in reversed(done) if item.name not in keep]
    return RetentionDecision(keep=keep, prune=prune)
