"""A rehearsal: restore a backup into a scratch database, apply the plan there, verify, gate on the figures.

The scratch database lives on the target's server and is always dropped; figures are per migration."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbops import errors
from dbops.runner import artifact, connection, dbverify, restore, restore_admin, storage
from dbops.runner.migrations import apply, lock, session, source
from dbops.runner.migrations import rehearsal_preflight as preflight
from dbops.runner.migrations import rehearsal_probe as probe

SCRATCH_PREFIX = "dbops_rehearsal_"
_SCRATCH_NAME = re.compile(r"^dbops_rehearsal_[a-z0-9_]{1,47}$")


def scratch_name(*seed: str) -> str:
    """``dbops_rehearsal_<12 hex>`` derived from the seed (e.g. namespace, name, revision)."""
    return SCRATCH_PREFIX + hashlib.sha256("\0".join(seed).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RehearsalOptions:
    """Where to rehearse and what the rehearsal must stay within."""

    scratch_database: str
    max_duration_seconds: float | None = None
    """The migrations together must finish within this (the maintenance window's duration)."""
    max_exclusive_lock_bytes: int | None = None
    """No migration may hold an ACCESS EXCLUSIVE lock on a table larger than this."""
    restore_jobs: int = 1
    server: connection.ConnectionSettings | None = None
    """A staging server to restore the copy on (default: the target's server)."""
    available_space_bytes: int | None = None
    """The disk the server has free for the copy (PostgreSQL does not tell a client): refuse when twice the
    database's size does not fit."""


@dataclass
class RehearsalReport:
    """What the rehearsal did and found (filled as far as it got when it fails)."""

    scratch_database: str
    plan_hash: str = ""
    backup: str = ""
    restore_ms: int = 0
    migrations: list[probe.MigrationFigures] = field(default_factory=list)
    verification: list[dbverify.CheckResult] = field(default_factory=list)
    outcome: str = "Failed"
    """Passed, Failed (the plan or the verification failed on the copy) or Blocked (a gate stopped it)."""
    reason: str = ""
    message: str = ""
    scratch_dropped: bool = False
    sampler_errors: list[str] = field(default_factory=list)
    server: str = ""
    """The server the copy is restored on (credential-free)."""
    warnings: list[str] = field(default_factory=list)
    copy_bytes: int = 0
    """The copy's expected size: the database size the backup recorded."""
    space_check: str = ""
    """What was checked about disk space before restoring, or why nothing could be."""

    @property
    def duration_ms(self) -> int:
        """The migrations' time on the copy (without the restore)."""
        return sum(figures.duration_ms for figures in self.migrations)

    def largest_lock(self) -> tuple[probe.MigrationFigures, probe.ExclusiveLock] | None:
        """The AccessExclusive lock on the largest table, with its migration."""
        locks = [(figures, held) for figures in self.migrations for held in figures.locks]
        return max(locks, key=lambda item: (item[1].table_bytes, item[1].held_ms), default=None)

    def as_result(self) -> dict[str, Any]:
        """The ``rehearsal`` object of the result JSON (summary first: lists are shortened, never these)."""
        result: dict[str, Any] = {
            "planHash": self.plan_hash, "outcome": self.outcome, "reason": self.reason,
            "durationMs": self.duration_ms, "restoreMs": self.restore_ms, "backup": self.backup,
            "scratchDatabase": self.scratch_database, "scratchDropped": self.scratch_dropped,
            "rowsTouched": sum(f.inserted + f.updated + f.deleted for f in self.migrations),
            "copyBytes": self.copy_bytes, "spaceCheck": self.space_check, "server": self.server,
        }
        if self.warnings:
            result["warnings"] = self.warnings[:3]
        largest = self.largest_lock()
        if largest is not None:
            result["largestExclusiveLock"] = {"version": largest[0].version, **largest[1].as_result()}
        result["migrations"] = [figures.as_result() for figures in self.migrations]
        if self.verification:
            result["verification"] = [check.as_result() for check in self.verification]
        if self.sampler_errors:
            result["samplerErrors"] = self.sampler_errors[:3]
        return result


def rehearse(store: storage.Storage, target: connection.ConnectionSettings, migrations: list[source.Migration],
             config: session.RunConfig, options: RehearsalOptions, report: RehearsalReport | None = None
             ) -> RehearsalReport:
    """Rehearse the plan on a restored copy; raises (after dropping the copy) when it failed or a gate tripped.

    ``config.expect_plan_hash`` (the plan made on the target) must equal the plan made on the copy: a backup
    at another version than the database would rehearse something else.
    """
    report = report if report is not None else RehearsalReport(options.scratch_database)
    _check_scratch_name(options.scratch_database, target)
    scratch = (options.server or target).with_dbname(options.scratch_database)
    report.server = preflight.server_name(scratch)
    try:
        # Refusals that need no copy come first: nothing is created, so nothing is left to drop.
        manifest = artifact.load_manifest(store)
        preflight.check_server(scratch, manifest, report.warnings)
        preflight.check_privileges(scratch)
        preflight.check_space(manifest, options.available_space_bytes, report)
    except errors.DbopsError as error:
        report.reason, report.message = error.reason, str(error)
        report.scratch_dropped = _absent(scratch)  # none made now; one a killed rehearsal left may still be there
        raise
    try:
        try:
            restore_admin.drop_database(scratch)  # left by a rehearsal that was killed
            started = time.monotonic()
            restored = restore.run_restore(store, scratch, restore.RestoreOptions(create=True, jobs=options.restore_jobs))
            report.restore_ms = int((time.monotonic() - started) * 1000)
            report.backup = restored.manifest.name
            if not restored.passed:
                problems = restored.row_counts.mismatches if restored.row_counts else []
                raise errors.VerificationError(f"the restored copy of backup {restored.manifest.name} does not match "
                                               f"its manifest: {'; '.join(problems)[:500]}", reason="RestoreFailed")
            with scratch.connect() as conn, scratch.connect() as watcher:
                _apply(conn, watcher, migrations, config, report)
        finally:
            report.scratch_dropped = _drop(scratch)
    except errors.DbopsError as error:
        report.reason, report.message = error.reason, str(error)
        raise
    gate = gate_failure(report, options)
    if gate is not None:
        report.outcome, report.reason, report.message = "Blocked", gate.reason, str(gate)
        raise gate
    report.outcome, report.reason = "Passed", "Passed"
    report.message = (f"rehearsed {len(report.migrations)} migrations on a copy restored from {report.backup}: "
                      f"{report.duration_ms / 1000:.1f}s")
    return report


def gate_failure(report: RehearsalReport, options: RehearsalOptions) -> errors.VerificationError | None:
    """The error for the first gate the figures cross, or None."""
    limit = options.max_duration_seconds
    if limit is not None and report.duration_ms > limit * 1000:
        return errors.VerificationError(
            f"the migrations took {report.duration_ms / 1000:.1f}s on a restored copy of the database, longer than "
            f"the {_seconds(limit)} allowed (the maintenance window's duration)", reason="RehearsalExceededWindow")
    max_bytes = options.max_exclusive_lock_bytes
    largest = report.largest_lock()
    if max_bytes is not None and largest is not None and largest[1].table_bytes > max_bytes:
        figures, held = largest
        return errors.VerificationError(
            f"migration {figures.version}_{figures.name} held an ACCESS EXCLUSIVE lock on {held.table} "
            f"({_size(held.table_bytes)}, more than the {_size(max_bytes)} allowed) for {held.held_ms} ms on a "
            "restored copy: it would block every read and write of that table; rewrite it to lock less "
            "(e.g. CREATE INDEX CONCURRENTLY, NOT VALID + VALIDATE) or raise rehearsal.maxExclusiveLockTableSize",
            reason="RehearsalLockedLargeTable")
    return None


def _apply(conn: psycopg.Connection[Any], watcher: psycopg.Connection[Any], migrations: list[source.Migration],
           config: session.RunConfig, report: RehearsalReport) -> None:
    """Plan on the copy, then each step alone with the lock sampler running, then the verification."""
    lock.watch_client_connection(conn)
    session.import_first(conn, migrations, config)  # the copy has the other tool's history, as the database does
    plan = session.make_plan(conn, migrations, config)
    report.plan_hash = plan.hash
    if config.expect_plan_hash and config.expect_plan_hash != plan.hash:
        raise errors.MigrationError(
            f"the plan on the restored copy ({', '.join(plan.pending) or 'nothing'} pending from version "
            f"{plan.current_version or 'none'}, hash {plan.hash[:12]}) differs from the plan for the database (hash "
            f"{config.expect_plan_hash[:12]}): backup {report.backup} is not at the database's version; take a new "
            "backup", reason="RehearsalPlanMismatch")
    failure = session.lint_failure(plan, config)
    if failure is not None:
        raise failure
    history = frozenset({str(config.table)})
    verify = config.verify
    counts = dbverify.row_counts(conn, verify.exclude_tables | history) \
        if verify is not None and "rowCounts" in verify.builtins else None
    options = dataclasses.replace(config.apply, dry_run=False)
    for index, step in enumerate(plan.steps):
        # One step at a time (the baseline with the first), so locks and counters belong to one migration.
        single = dataclasses.replace(plan, steps=[step], baseline_version=plan.baseline_version if index == 0 else None)
        before = probe.table_stats(conn, history)
        sampler = probe.LockSampler(watcher, conn.info.backend_pid)
        started = time.monotonic()
        failed: errors.DbopsError | None = None
        try:
            with contextlib.ExitStack() as stack:
                if not step.script.no_transaction:
                    # The migration's transaction becomes a savepoint of this one, so every lock it took is still
                    # held when the sampler takes its last look (after the migration, before this commit).
                    stack.enter_context(conn.transaction())
                with sampler.running():
                    apply.execute_plan(conn, single, config.table, options, baseline=migrations)
        except errors.DbopsError as error:
            failed = error
        duration_ms = int((time.monotonic() - started) * 1000)
        after: dict[int, probe.TableStats] = {}
        with contextlib.suppress(psycopg.Error):
            after = probe.table_stats(conn, history)
        if sampler.error:
            report.sampler_errors.append(f"{step.migration.label}: {sampler.error}")
        report.migrations.append(probe.figures(step.migration.version, step.migration.name, duration_ms, sampler,
                                               before, after or before, failed=failed is not None))
        if failed is not None:
            raise errors.MigrationError(f"on a restored copy of the database: {failed}", reason="RehearsalFailed")
    if verify is not None:
        verify = dataclasses.replace(verify, exclude_tables=verify.exclude_tables | history)
        report.verification = dbverify.verify(conn, verify, counts)
        failed_checks = [check for check in report.verification if not check.passed]
        if failed_checks:
            raise errors.VerificationError(
                "verification failed on a restored copy after the migrations: "
                + "; ".join(f"{check.name}: {check.detail}" for check in failed_checks[:5]),
                reason="RehearsalVerificationFailed")


def _check_scratch_name(name: str, target: connection.ConnectionSettings) -> None:
    """Only databases named dbops_rehearsal_… are ever created and dropped here, and never the target."""
    if not _SCRATCH_NAME.match(name) or name == target.dbname:
        raise errors.InvalidSpecError(
            f"scratch database {name!r} must be named {SCRATCH_PREFIX}<lowercase letters, digits, _> (at most 63 "
            "characters) and differ from the target database: it is dropped after the rehearsal")


def _drop(scratch: connection.ConnectionSettings) -> bool:
    """Drop the scratch database; False (with a warning) when it could not be."""
    try:
        restore_admin.drop_database(scratch)
        return True
    except (errors.DbopsError, psycopg.Error) as error:
        print(f"dbops: warning: could not drop scratch database {scratch.dbname}: {scratch.redact(str(error))}",
              file=sys.stderr, flush=True)
        return False


def _absent(scratch: connection.ConnectionSettings) -> bool:
    """Whether the scratch database does not exist (False when that cannot be told)."""
    try:
        return not restore_admin.database_exists(scratch)
    except (errors.DbopsError, psycopg.Error):
        return False


def _size(value: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} B"


def _seconds(value: float) -> str:
    return f"{value:g}s"
