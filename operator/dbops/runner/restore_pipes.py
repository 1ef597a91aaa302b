"""Restore pipelines: archive → pg_restore → (filter) → psql or the server, stopping at the first error."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dbops import errors
from dbops.runner import artifact, backup, connection, pgtools, storage, tool_errors
from dbops.runner.manifest import BackupManifest


def pg_restore_error(stderr: str, settings: connection.ConnectionSettings) -> errors.DbopsError:
    """The error for a failed pg_restore or psql, from its (redacted) stderr."""
    text = settings.redact(stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any("connection to server" in line for line in lines) or tool_errors.connection_lost(text):
        return tool_errors.tool_error("pg_restore", text, settings)  # transient: a retry may finish the restore
    detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")
    return errors.PermanentError(f"restore stopped at the first error: {detail[:600]}", reason="RestoreFailed")


def wait_or_kill(process: subprocess.Popen[bytes]) -> None:
    """Kill a process still running, then reap it."""
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def needs_settings_filter(server_major: int, tools_major: int) -> bool:
    """Whether pg_restore's script sets parameters the target server does not know (transaction_timeout, 17+)."""
    return server_major < 17 <= tools_major


class SettingsFilter:
    """A sink wrapper dropping ``SET transaction_timeout`` from a SQL script's header; the rest passes raw.

    The header ends at the first statement that creates or loads something, so row data is never touched.
    """

    _UNKNOWN = (b"SET transaction_timeout",)
    _HEADER_END = (b"COPY ", b"CREATE ", b"ALTER ", b"SELECT pg_catalog.lo_", b"INSERT ")

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self._sink = sink
        self._pending = b""
        self._in_header = True

    def __call__(self, data: bytes) -> None:
        """Filter and forward a chunk."""
        if not self._in_header:
            self._sink(data)
            return
        self._pending += data
        while self._in_header and b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            if not line.startswith(self._UNKNOWN):
                self._sink(line + b"\n")
            if line.startswith(self._HEADER_END):
                self._in_header = False
        if not self._in_header and self._pending:
            self._sink(self._pending)
            self._pending = b""

    def flush(self) -> None:
        """Forward whatever is still held back."""
        if self._pending:
            self._sink(self._pending)
            self._pending = b""


def drop_unknown_settings(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy a script from a pipe to a pipe through a :class:`SettingsFilter`."""
    script = SettingsFilter(sink.write)
    while chunk := source.read(backup.CHUNK):
        script(chunk)
    script.flush()


def sql_pipeline(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings,
    tools: pgtools.PgTools, pg_restore_args: list[str], local: Path | None, *, filter_settings: bool = False,
) -> None:
    """pg_restore → SQL script → psql in one transaction, stopping at the first error.

    Used for targets older than the tools (with the filter).
    """
    with tempfile.TemporaryDirectory(prefix="dbops-restore-") as work:
        stderr_path = Path(work, "stderr")
        with open(stderr_path, "wb") as stderr_file:
            producer = subprocess.Popen(
                [tools.path("pg_restore"), *pg_restore_args, "-f", "-", *([str(local)] if local else [])],
                stdin=subprocess.PIPE if local is None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr_file,
            )
            assert producer.stdout is not None
            consumer = subprocess.Popen(
                [tools.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                 "--dbname", settings.conninfo(), "-f", "-"],
                stdin=subprocess.PIPE if filter_settings else producer.stdout, stdout=subprocess.DEVNULL,
                stderr=stderr_file, env=settings.subprocess_env(),
            )
            pump: threading.Thread | None = None
            if filter_settings:
                assert consumer.stdin is not None
                pump = threading.Thread(target=_pump, args=(producer.stdout, consumer.stdin), daemon=True)
                pump.start()
            else:
                producer.stdout.close()
            try:
                if local is None:
                    feed_archive(producer, store, manifest, "restore")
            except BaseException:
                wait_or_kill(producer)
                wait_or_kill(consumer)
                raise
            producer_code = producer.wait()
            if pump is not None:
                pump.join()
            consumer_code = consumer.wait()
        if producer_code != 0 or consumer_code != 0:
            raise pg_restore_error(stderr_path.read_text(errors="replace"), settings)


def _pump(source: IO[bytes], sink: IO[bytes]) -> None:
    try:
        drop_unknown_settings(source, sink)
    except (BrokenPipeError, ValueError, OSError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            sink.close()
        source.close()


def feed_archive(
    process: subprocess.Popen[bytes], store: storage.Storage, manifest: BackupManifest, label: str
) -> None:
    """Stream the (single-object) dump into a process's stdin, checking its checksum on the way."""
    try:
        artifact.stream_verified(store, manifest.objects[0], manifest.codec, artifact.feed_process(process), label)
    finally:
        artifact.close_stdin(process)


def run_pg_restore(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings, tools: pgtools.PgTools,
    server_major: int, args: list[str], jobs: int, local: Path | None,
) -> None:
    """pg_restore into the server (from a local copy, with -j when asked, or from the stream), in one transaction."""
    if needs_settings_filter(server_major, tools.major):
        # pg_restore -j cannot drop the setting older servers reject: one stream through psql instead.
        sql_pipeline(store, manifest, settings, tools, args, local, filter_settings=True)
        return
    args = [tools.path("pg_restore"), "--exit-on-error", "--dbname", settings.conninfo(), *args]
    if local is not None:
        args += [f"--jobs={jobs}"] if jobs > 1 else ["--single-transaction"]
        args.append(str(local))
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, env=settings.subprocess_env(),
                                check=False)
        if result.returncode != 0:
            raise pg_restore_error(result.stderr.decode(errors="replace"), settings)
        return
    args.append("--single-transaction")
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr_file,
                                   env=settings.subprocess_env())
        try:
            feed_archive(process, store, manifest, "restore")
        except BaseException:
            wait_or_kill(process)
            raise
        code = process.wait()
        if code != 0:
            stderr_file.seek(0)
            raise pg_restore_error(stderr_file.read().decode(errors="replace"), settings)


def restore_plain(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings, tools: pgtools.PgTools,
    server_major: int,
) -> None:
    """A plain-format (SQL script) backup through psql, in one transaction."""
    args = [tools.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
            "--dbname", settings.conninfo(), "-f", "-"]
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr_file,
                                   env=settings.subprocess_env())
        sink: Callable[[bytes], object] = artifact.feed_process(process)
        script = SettingsFilter(sink) if needs_settings_filter(
            server_major, pgtools.major_of(manifest.dump_tool_version)) else None
        try:
            try:
                artifact.stream_verified(store, manifest.objects[0], manifest.codec, script or sink, "restore")
                if script is not None:
                    script.flush()
            finally:
                artifact.close_stdin(process)
        except BaseException:
            wait_or_kill(process)
            raise
        if process.wait() != 0:
            stderr_file.seek(0)
            raise pg_restore_error(stderr_file.read().decode(errors="replace"), settings)


