"""Command mode: a framework's migration command wrapped in pre-checks, the advisory lock and verification."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from dbops import errors
from dbops.redaction import redact
from dbops.runner import dbverify, prechecks, relation_sizes
from dbops.runner.migrations import frameworks, lock, session

Connection = psycopg.Connection[Any]


def run_command(
    connection: Connection,
    argv: Sequence[str],
    config: session.RunConfig,
    *,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float | None = None,
    outcome: session.RunOutcome | None = None,
    framework: str = "auto",
    row_count_tables: frozenset[str] = frozenset(),
) -> session.RunOutcome:
    """Pre-checks, then the command under the advisory lock (output passed through), then verification.

    Row counts leave out the framework's bookkeeping tables (``framework`` auto: detected from ``argv``,
    else every known set), or compare only ``row_count_tables`` when given; the framework's own record
    of what ran, before and after, lands in ``outcome.framework_history``.
    """
    if not argv:
        raise errors.InvalidSpecError("command mode needs a command after '--' (e.g. python manage.py migrate)")
    outcome = outcome if outcome is not None else session.RunOutcome()
    lock.watch_client_connection(connection)
    if config.prechecks is not None:
        outcome.prechecks = prechecks.run_prechecks(connection, config.prechecks)
        prechecks.raise_on_failures(outcome.prechecks, config.prechecks.fail_on)
    detected = frameworks.detect(argv) if framework == "auto" else framework
    with lock.advisory_lock(connection, str(config.table), config.lock_wait_seconds):
        verify_config = None
        before = None
        if config.verify is not None:
            verify_config = dataclasses.replace(
                config.verify, exclude_tables=config.verify.exclude_tables | {str(config.table)}
                | frameworks.bookkeeping_tables(detected),
                row_count_tables=row_count_tables or config.verify.row_count_tables,
            )
            if "rowCounts" in verify_config.builtins:
                before = dbverify.row_counts(connection, verify_config.exclude_tables)
        sizes_before = relation_sizes.snapshot(connection) if config.sizes_top else None
        history_before = frameworks.history(connection, detected) if detected not in (None, "none") else None
        try:
            _run(argv, env, timeout_seconds)
        finally:
            if detected not in (None, "none"):
                assert detected is not None
                outcome.framework_history = frameworks.history_change(
                    detected, history_before, frameworks.history(connection, detected))
        if sizes_before is not None:
            outcome.sizes = relation_sizes.changes(sizes_before, relation_sizes.snapshot(connection), config.sizes_top)
        if verify_config is not None:
            outcome.verification = dbverify.verify(connection, verify_config, before)
            failed = [r for r in outcome.verification if not r.passed]
            if failed:
                raise errors.VerificationError(
                    "verification after the command failed: "
                    + "; ".join(f"{r.name}: {r.detail}" for r in failed[:5])
                )
    return outcome


def _run(argv: Sequence[str], env: Mapping[str, str] | None, timeout_seconds: float | None) -> None:
    shown = redact(" ".join(argv))
    try:
        completed = subprocess.run(list(argv), env=dict(env if env is not None else os.environ),
                                   timeout=timeout_seconds, check=False)
    except FileNotFoundError:
        raise errors.InvalidSpecError(f"migration command not found: {shown}") from None
    except subprocess.TimeoutExpired:
        raise errors.MigrationError(f"migration command timed out after {timeout_seconds:g}s: {shown}") from None
    if completed.returncode != 0:
        raise errors.MigrationError(f"migration command exited with code {completed.returncode}: {shown}")
