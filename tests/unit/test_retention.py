"""Retention selection: keepLast/Daily/Weekly/Monthly, maxAge, and what is always kept."""

from __future__ import annotations

import datetime

import pytest

from dbops.api import schedule
from dbops.reconcile.retention import BackupItem, RetentionPolicy, parse_duration, select_backups_to_prune

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


def _daily(days: int, hour: int = 2) -> list[BackupItem]:
    """One backup per day at ``hour``:00 for the last ``days`` days, newest first (``d0`` is today)."""
    return [
        BackupItem(f"d{age}", (NOW - datetime.timedelta(days=age)).replace(hour=hour)) for age in range(days)
    ]


def test_empty_policy_keeps_everything() -> None:
    decision = select_backups_to_prune(_daily(5), RetentionPolicy(), NOW)
    assert decision.prune == []
    assert set(decision.keep) == {"d0", "d1", "d2", "d3", "d4"}


def test_keep_last_keeps_the_newest_n_and_prunes_oldest_first() -> None:
    decision = select_backups_to_prune(_daily(6), RetentionPolicy(keep_last=2), NOW)
    assert set(decision.keep) == {"d0", "d1"}
    assert decision.prune == ["d5", "d4", "d3", "d2"]
    assert decision.keep["d1"] == ["last 2/2"]


def test_keep_daily_keeps_the_newest_backup_of_each_day() -> None:
    backups = [*_daily(4, hour=2), *[BackupItem(f"late{b.name}", b.completed_at.replace(hour=20))
                                     for b in _daily(4)]]
    decision = select_backups_to_prune(backups, RetentionPolicy(keep_daily=3), NOW)
    # Today's 20:00 backup is in the future relative to NOW but still the newest of its day.
    assert set(decision.keep) == {"lated0", "lated1", "lated2"}
    assert "d0" in decision.prune and "lated3" in decision.prune


def test_keep_weekly_uses_iso_weeks() -> None:
    decision = select_backups_to_prune(_daily(21), RetentionPolicy(keep_weekly=2), NOW)
    # 2026-11-25 is a Wednesday: week 48 holds d0..d2 (Mon 23rd), week 47 holds d3..d9.
    assert set(decision.keep) == {"d0", "d3"}
    assert decision.keep["d3"] == ["weekly 2/2"]


def test_keep_monthly_spans_months_with_backups_only() -> None:
    backups = [
        BackupItem("nov", datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)),
        BackupItem("oct-late", datetime.datetime(2026, 10, 30, tzinfo=datetime.UTC)),
        BackupItem("oct-early", datetime.datetime(2026, 10, 2, tzinfo=datetime.UTC)),
        BackupItem("jun", datetime.datetime(2026, 6, 15, tzinfo=datetime.UTC)),
        BackupItem("jan", datetime.datetime(2026, 1, 15, tzinfo=datetime.UTC)),
    ]
    decision = select_backups_to_prune(backups, RetentionPolicy(keep_monthly=3), NOW)
    assert set(decision.keep) == {"nov", "oct-late", "jun"}
    assert decision.prune == ["jan", "oct-early"]


def test_rules_combine_and_record_every_reason() -> None:
    decision = select_backups_to_prune(_daily(40), RetentionPolicy(keep_last=1, keep_daily=2, keep_monthly=2), NOW)
    assert decision.keep["d0"] == ["last 1/1", "daily 1/2", "monthly 1/2"]
    assert decision.keep["d1"] == ["daily 2/2"]
    # The newest backup of October is the 31st, 25 days before NOW.
    assert decision.keep["d25"] == ["monthly 2/2"]
    assert len(decision.prune) == 40 - 3


def test_max_age_overrides_keep_rules() -> None:
    policy = RetentionPolicy(keep_daily=30, max_age=datetime.timedelta(days=7))
    decision = select_backups_to_prune(_daily(30), policy, NOW)
    assert set(decision.keep) == {f"d{age}" for age in range(7)}
    assert "d7" in decision.prune and "d29" in decision.prune


def test_max_age_alone_keeps_everything_younger() -> None:
    decision = select_backups_to_prune(_daily(10), RetentionPolicy(max_age=parse_duration("72h")), NOW)
    assert set(decision.keep) == {"d0", "d1", "d2"}
    assert decision.keep["d0"] == ["younger than maxAge"]


def test_the_newest_backup_survives_even_when_too_old() -> None:
    old = [BackupItem("ancient", NOW - datetime.timedelta(days=400)),
           BackupItem("older", NOW - datetime.timedelta(days=500))]
    decision = select_backups_to_prune(old, RetentionPolicy(keep_last=5, max_age=datetime.timedelta(days=30)), NOW)
    assert decision.keep == {"ancient": ["newest backup"]}
    assert decision.prune == ["older"]


def test_running_backups_are_never_pruned() -> None:
    backups = [("running", None), *_daily(3)]
    decision = select_backups_to_prune(backups, RetentionPolicy(keep_last=1), NOW)
    assert decision.keep["running"] == ["not completed"]
    assert "running" not in decision.prune
    assert decision.prune == ["d2", "d1"]


def test_timezones_are_normalised_to_utc() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=-5))
    # 21:00 at UTC-5 on the 24th is 02:00 UTC on the 25th: same UTC day as the second backup.
    backups = [BackupItem("a", datetime.datetime(2026, 11, 24, 21, 0, tzinfo=tz)),
               BackupItem("b", datetime.datetime(2026, 11, 25, 1, 0, tzinfo=datetime.UTC))]
    decision = select_backups_to_prune(backups, RetentionPolicy(keep_daily=1), NOW)
    assert set(decision.keep) == {"a"}
    assert decision.prune == ["b"]


def test_policy_from_the_api_model() -> None:
    model = schedule.RetentionPolicy.model_validate({"keepLast": 7, "keepMonthly": 12, "maxAge": "720h"})
    assert RetentionPolicy.from_model(model) == RetentionPolicy(7, 0, 0, 12, datetime.timedelta(days=30))


def test_policy_from_spec() -> None:
    policy = RetentionPolicy.from_spec({"keepLast": 7, "keepDaily": 30, "keepWeekly": 8, "keepMonthly": 12,
                                        "maxAge": "30d"})
    assert policy == RetentionPolicy(7, 30, 8, 12, datetime.timedelta(days=30))
    assert RetentionPolicy.from_spec(None) == RetentionPolicy()


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("720h", 720 * 3600), ("2w", 14 * 86400),
                                               ("1d12h", 36 * 3600), ("90m", 5400), ("45s", 45)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "1d 2h", "-1d", "1.5d"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
