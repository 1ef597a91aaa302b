"""Verification of a stored backup: checksums, a full decode, and an optional restore test."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import subprocess
import tempfile
import uuid
from typing import Any

import psycopg

from dbops import errors
from dbops.api.common import SqlCheck
from dbops.runner import artifact, connection, dbverify, pgtools, restore, restore_admin, restore_checks, storage
from dbops.runner.manifest import BackupManifest


@dataclasses.dataclass
class CheckResult:
    """One SQL check run against the scratch database."""

    sql: str
    passed: bool
    detail: str = ""


@dataclasses.dataclass
class VerifyOutcome:
    """What verification found."""

    manifest: BackupManifest
    decoded: bool
    restore_test: restore_checks.RowCountReport | None = None
    checks: list[CheckResult] = dataclasses.field(default_factory=list)
    user_checks: list[dbverify.CheckResult] = dataclasses.field(default_factory=list)
    """Results of the SQL checks with expectations."""
    verified_at: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @property
    def passed(self) -> bool:
        """Whether everything that ran passed."""
        return (self.decoded and (self.restore_test is None or self.restore_test.passed)
                and all(check.passed for check in self.checks) and all(check.passed for check in self.user_checks))


def decode(store: storage.Storage, manifest: BackupManifest, pg_bin_dir: str | None = None) -> None:
    """Checksums plus a full decode: every byte through ``pg_restore -f /dev/null`` (plain: decompression).

    Raises VerificationError when a checksum differs or the archive does not decode to the end.
    """
    if manifest.format == "plain":
        for item in manifest.objects:
            artifact.stream_verified(store, item, manifest.codec, lambda _data: None, "verify")
        return
    tools = pgtools.find_tools(pgtools.major_of(manifest.dump_tool_version), pg_bin_dir)
    if manifest.format == "directory":
        with artifact.local_copy(store, manifest) as local:
            result = subprocess.run([tools.path("pg_restore"), "-f", "/dev/null", str(local)],
                                    stdin=subprocess.DEVNULL, capture_output=True, check=False)
            if result.returncode != 0:
                raise _decode_error(result.stderr.decode(errors="replace"))
        return
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen([tools.path("pg_restore"), "-f", "/dev/null"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=stderr_file)
        try:
            artifact.stream_verified(store, manifest.objects[0], manifest.codec, artifact.feed_process(process),
                                     "verify")
        finally:
            artifact.close_stdin(process)
            code = process.wait()
        if code != 0:
            stderr_file.seek(0)
            raise _decode_error(stderr_file.read().decode(errors="replace"))


def _decode_error(stderr: str) -> errors.VerificationError:
    lines = [line for line in stderr.splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")
    return errors.VerificationError(f"the archive does not decode: {detail[:400]}", reason="DecodeFailed")


def run_check(conn: psycopg.Connection[Any], query: str) -> CheckResult:
    """Run one SQL check: it passes when it returns no rows or every row's first column is true."""
    try:
        with conn.transaction():
            rows = conn.execute(query).fetchall()
    except psycopg.Error as error:
        return CheckResult(sql=query, passed=False, detail=f"error: {str(error).strip()[:300]}")
    failing = [row for row in rows if not row or row[0] is not True]
    if failing:
        return CheckResult(sql=query, passed=False, detail=f"{len(failing)} failing row(s), first: {failing[0]!r}"[:300])
    return CheckResult(sql=query, passed=True)


def run_verify(
    store: storage.Storage,
    *,
    scratch_server: connection.ConnectionSettings | None = None,
    checks: tuple[str, ...] = (),
    user_checks: tuple[SqlCheck, ...] = (),
    pg_bin_dir: str | None = None,
) -> VerifyOutcome:
    """Verify the backup in ``store``; with ``scratch_server``, also restore it into a scratch database there.

    ``checks`` are plain queries (see :func:`run_check`); ``user_checks`` carry expectations and run read-only.
    """
    manifest = artifact.load_manifest(store)
    decode(store, manifest, pg_bin_dir)
    outcome = VerifyOutcome(manifest=manifest, decoded=True)
    if scratch_server is None:
        if checks or user_checks:
            raise errors.InvalidSpecError("SQL checks need --restore-test")
        return outcome
    if manifest.scope.schema_only or manifest.scope.data_only:
        raise errors.InvalidSpecError("a restore test needs a backup with both schema and data")
    scratch = scratch_server.with_dbname(f"dbops_verify_{uuid.uuid4().hex[:12]}")
    restore_admin.create_database(scratch)
    try:
        result = restore.run_restore(store, scratch, restore.RestoreOptions(
            mode="full", pg_bin_dir=pg_bin_dir, row_count_check=True, no_owner=True,
        ))
        outcome.restore_test = result.row_counts
        if checks or user_checks:
            with scratch.connect() as conn:
                outcome.checks = [run_check(conn, query) for query in checks]
                outcome.user_checks = restore_checks.run_checks(conn, user_checks) if user_checks else []
    finally:
        with contextlib.suppress(errors.DbopsError, psycopg.Error):
            restore_admin.drop_database(scratch)
    return outcome
