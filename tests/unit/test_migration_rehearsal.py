"""The rehearsal's pure parts: the gates, the figures of one migration, the spec fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dbops import errors
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.migration_rehearsal import quantity_bytes
from dbops.runner.migrations import rehearsal
from dbops.runner.migrations import rehearsal_preflight as preflight
from dbops.runner.migrations import rehearsal_probe as probe


def _figures(version: str, duration_ms: int, locks: dict[str, int]) -> probe.MigrationFigures:
    held = [probe.ExclusiveLock(table, 1.0, 1.5, table_bytes) for table, table_bytes in locks.items()]
    return probe.MigrationFigures(version, "step", duration_ms, locks=held)


def _report(*figures: probe.MigrationFigures) -> rehearsal.RehearsalReport:
    return rehearsal.RehearsalReport("dbops_rehearsal_abc", migrations=list(figures))


def test_duration_gate_counts_the_migrations_together() -> None:
    report = _report(_figures("0001", 40_000, {}), _figures("0002", 30_000, {}))
    options = rehearsal.RehearsalOptions("dbops_rehearsal_abc", max_duration_seconds=60)
    failure = rehearsal.gate_failure(report, options)
    assert failure is not None and failure.reason == "RehearsalExceededWindow"
    assert "70.0s" in str(failure) and "60s" in str(failure)
    assert rehearsal.gate_failure(report, rehearsal.RehearsalOptions("x", max_duration_seconds=70)) is None


def test_lock_gate_names_the_migration_the_table_and_the_sizes() -> None:
    report = _report(_figures("0001", 10, {"app.small": 1000}), _figures("0002", 10, {"app.bookings": 300 << 20}))
    failure = rehearsal.gate_failure(report, rehearsal.RehearsalOptions("x", max_exclusive_lock_bytes=100 << 20))
    assert failure is not None and failure.reason == "RehearsalLockedLargeTable"
    assert "0002_step" in str(failure) and "app.bookings" in str(failure) and "300.0 MiB" in str(failure)
    assert "100.0 MiB" in str(failure) and "510 ms" in str(failure)
    assert rehearsal.gate_failure(report, rehearsal.RehearsalOptions("x", max_exclusive_lock_bytes=300 << 20)) \
        is None


def test_figures_sum_row_deltas_and_list_size_changes_largest_first() -> None:
    before = {1: probe.TableStats("app.a", 10, 0, 0, 8192, 8192), 2: probe.TableStats("app.b", 0, 5, 0, 100, 0),
              3: probe.TableStats("app.gone", 0, 0, 0, 4096, 0)}
    after = {1: probe.TableStats("app.a", 15, 2, 1, 8192, 16384), 2: probe.TableStats("app.b", 0, 9, 3, 100, 0),
             4: probe.TableStats("app.new", 0, 0, 0, 0, 0)}
    sampler = probe.LockSampler(None, 0)  # type: ignore[arg-type]
    sampler.locks = {1: probe.ExclusiveLock("app.a", 1.0, 1.2)}
    figures = probe.figures("0003", "x", 12, sampler, before, after)
    assert (figures.inserted, figures.updated, figures.deleted) == (5, 6, 4)
    assert [change["table"] for change in figures.size_changes] == ["app.a", "app.gone"]
    assert figures.size_changes[0]["indexBytes"] == [8192, 16384]
    assert figures.as_result()["exclusiveLocks"] == [{"table": "app.a", "heldMs": 210, "tableBytes": 8192}]


def test_scratch_names_are_stable_and_never_the_target() -> None:
    assert rehearsal.scratch_name("ns", "m", "r1") == rehearsal.scratch_name("ns", "m", "r1")
    assert rehearsal.scratch_name("ns", "m", "r1") != rehearsal.scratch_name("ns", "m", "r2")
    assert rehearsal.scratch_name("a").startswith("dbops_rehearsal_") and len(rehearsal.scratch_name("a")) == 28


def test_spec_reads_the_rehearsal_fields_and_refuses_a_bad_size() -> None:
    base = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"inline": [
        {"version": "1", "name": "a", "up": "SELECT 1"}]}}
    spec = DatabaseMigrationSpec.model_validate({**base, "rehearsal": {
        "enabled": True, "maxDuration": "30m", "maxExclusiveLockTableSize": "1.5Gi", "backupRef": {"name": "nightly"}}})
    assert spec.rehearsal.enabled and spec.rehearsal.max_duration == "30m"
    assert quantity_bytes(spec.rehearsal.max_exclusive_lock_table_size or "") == 3 << 29
    assert not DatabaseMigrationSpec.model_validate(base).rehearsal.enabled
    with pytest.raises(ValidationError, match=r"maxExclusiveLockTableSize|max_exclusive_lock_table_size"):
        DatabaseMigrationSpec.model_validate({**base, "rehearsal": {"maxExclusiveLockTableSize": "1GBB"}})


def test_spec_refuses_a_negative_available_space() -> None:
    base = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"inline": [
        {"version": "1", "name": "a", "up": "SELECT 1"}]}}
    assert DatabaseMigrationSpec.model_validate({**base, "rehearsal": {"availableSpace": "20Gi"}}
                                                ).rehearsal.available_space == "20Gi"
    with pytest.raises(ValidationError, match=r"availableSpace|available_space"):
        DatabaseMigrationSpec.model_validate({**base, "rehearsal": {"availableSpace": "-1Gi"}})


class _Manifest:
    name = "nightly"
    database_size_bytes = 3 << 30


class _Report:
    copy_bytes = 0
    space_check = ""


def test_space_check_needs_twice_the_recorded_size_and_says_when_it_checked_nothing() -> None:
    manifest, report = _Manifest(), _Report()
    preflight.check_space(manifest, None, report)  # type: ignore[arg-type]
    assert report.copy_bytes == 3 << 30 and report.space_check.startswith("not checked")
    preflight.check_space(manifest, 6 << 30, report)  # type: ignore[arg-type]
    assert report.space_check.startswith("passed") and "6.0 GiB" in report.space_check
    with pytest.raises(errors.ConfigurationError, match=r"6\.0 GiB .*backup nightly.*5\.0 GiB") as caught:
        preflight.check_space(manifest, 5 << 30, report)  # type: ignore[arg-type]
    assert caught.value.reason == "RehearsalInsufficientSpace" and report.space_check.startswith("failed")
