"""The backup: pg_dump streamed through compression and sha256 into storage, manifest written last."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

import dbops
from dbops import errors
from dbops.runner import compression, connection, dbproperties, pgtools, progress, stale, storage
from dbops.runner.manifest import MANIFEST_KEY, BackupManifest, BackupScope, StoredObject, TableRows

FORMATS = ("custom", "directory", "plain")
CHUNK = 1024 * 1024
_F_SETPIPE_SZ = 1031


@dataclasses.dataclass(frozen=True)
class BackupOptions:
    """What to dump and how to store it."""

    name: str
    namespace: str = "local"
    format: str = "custom"
    codec: str = "zstd"
    level: int | None = None
    jobs: int = 1
    scope: BackupScope = dataclasses.field(default_factory=BackupScope)
    pg_bin_dir: str | None = None
    abort_incomplete_after: float = 24 * 3600.0
    """Seconds after which incomplete uploads under the backup's folder are aborted first (0: never)."""


@dataclasses.dataclass(frozen=True)
class BackupOutcome:
    """A committed backup: its manifest and where it lives."""

    manifest: BackupManifest
    location: storage.Location
    aborted_uploads: tuple[str, ...] = ()
    """Stale incomplete uploads (or partial files) of earlier runs that were removed first."""

    @property
    def manifest_uri(self) -> str:
        """URI of the manifest."""
        return self.location.uri(MANIFEST_KEY)

    @property
    def artifact_uri(self) -> str:
        """URI of the dump (file or folder)."""
        return self.location.uri(dump_name(self.manifest.format, self.manifest.codec))

    @property
    def size_bytes(self) -> int:
        """Total stored bytes of the dump."""
        return sum(item.size_bytes for item in self.manifest.objects)

    @property
    def sha256(self) -> str:
        """The dump's sha256 (for a directory dump: sha256 over the per-file digests)."""
        if len(self.manifest.objects) == 1:
            return self.manifest.objects[0].sha256
        digest = hashlib.sha256()
        for item in sorted(self.manifest.objects, key=lambda o: o.name):
            digest.update(f"{item.sha256}  {item.name}\n".encode())
        return digest.hexdigest()


def dump_name(format_: str, codec: str) -> str:
    """Object name of the dump inside the backup folder (``dump.zst``, ``dump.gz``, ``dump`` or ``dump/``)."""
    if format_ == "directory":
        return "dump/"
    return "dump" + compression.SUFFIXES[codec]


def backup_folder(root: storage.Location, namespace: str, database: str, name: str) -> storage.Location:
    """``<storage>/<namespace>/<database>/<backup-name>``."""
    for part, what in ((namespace, "namespace"), (database, "database"), (name, "backup name")):
        if not part or "/" in part or part in (".", ".."):
            raise errors.InvalidSpecError(f"{what} {part!r} cannot be used in a storage path")
    return root.child(namespace, database, name)


def scope_arguments(scope: BackupScope) -> list[str]:
    """pg_dump options for a scope."""
    if scope.schema_only and scope.data_only:
        raise errors.InvalidSpecError("schema-only and data-only cannot both be set")
    args = ["--schema-only"] if scope.schema_only else ["--data-only"] if scope.data_only else []
    for flag, values in (
        ("--schema", scope.schemas), ("--exclude-schema", scope.exclude_schemas), ("--table", scope.tables),
        ("--exclude-table", scope.exclude_tables), ("--exclude-table-data", scope.exclude_table_data),
    ):
        args += [f"{flag}={value}" for value in values]
    return args


def _pattern_regex(pattern: str) -> tuple[re.Pattern[str] | None, re.Pattern[str]]:
    """A psql-style pattern as (schema regex or None, name regex)."""
    def convert(part: str) -> re.Pattern[str]:
        out = ""
        quoted = False
        for char in part:
            if char == '"':
                quoted = not quoted
            elif char == "*" and not quoted:
                out += ".*"
            elif char == "?" and not quoted:
                out += "."
            else:
                out += re.escape(char if quoted else char.lower())
        return re.compile(f"^{out}$")

    parts = re.split(r'\.(?=(?:[^"]*"[^"]*")*[^"]*$)', pattern)
    if len(parts) >= 2:
        return convert(parts[-2]), convert(parts[-1])
    return None, convert(parts[0])


def _matches(patterns: Iterable[str], schema: str, name: str, *, schema_pattern: bool = False) -> bool:
    for pattern in patterns:
        if schema_pattern:
            if _pattern_regex(pattern)[1].match(schema):
                return True
            continue
        schema_re, name_re = _pattern_regex(pattern)
        if name_re.match(name) and (schema_re is None or schema_re.match(schema)):
            return True
    return False


def tables_in_scope(all_tables: Iterable[tuple[str, str]], scope: BackupScope) -> list[tuple[str, str, bool]]:
    """(schema, table, data dumped) for the tables a pg_dump with this scope includes (approximating patterns)."""
    selected = []
    for schema, name in all_tables:
        if scope.schemas and not _matches(scope.schemas, schema, name, schema_pattern=True):
            continue
        if _matches(scope.exclude_schemas, schema, name, schema_pattern=True):
            continue
        if scope.tables and not _matches(scope.tables, schema, name):
            continue
        if _matches(scope.exclude_tables, schema, name):
            continue
        with_data = not scope.schema_only and not _matches(scope.exclude_table_data, schema, name)
        selected.append((schema, name, with_data))
    return selected


USER_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


def user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Ordinary tables (and partitions) outside system schemas and extensions."""
    return [(str(s), str(t)) for s, t in conn.execute(USER_TABLES_SQL).fetchall()]


def count_rows(conn: psycopg.Connection[Any], tables: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Exact row counts by ``schema.name``."""
    counts = {}
    for schema, name in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return counts


class _StderrTail:
    """Collects the end of a subprocess's stderr in a thread."""

    def __init__(self, stream: IO[bytes], limit: int = 200) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=limit)
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line.decode(errors="replace").rstrip())

    def text(self) -> str:
        """What was collected so far (waits briefly for the stream to end)."""
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


CONNECTION_LOST = (
    "server closed the connection unexpectedly", "terminating connection due to administrator command",
    "the database system is shutting down", "the database system is starting up",
    "the database system is in recovery mode", "connection to server was lost", "could not receive data from server",
    "could not send data to server", "ssl syscall error",
)


def connection_lost(text: str) -> bool:
    """Whether a tool's error output says the server went away mid-work (a restart, failover or network cut)."""
    lowered = text.lower()
    return any(marker in lowered for marker in CONNECTION_LOST)


def tool_error(tool: str, stderr: str, settings: connection.ConnectionSettings,
               command: Sequence[str] = ()) -> errors.DbopsError:
    """A clear error for a failed pg_dump/pg_restore/psql from its stderr (``command``: its argv, for names)."""
    text = settings.redact(stderr)
    lowered = text.lower()
    if "connection to server" in lowered and ("failed" in lowered or "refused" in lowered):
        return connection.connection_error(text, settings)
    if "password authentication failed" in lowered or re.search(r'database "[^"]+" does not exist', text):
        return connection.connection_error(text, settings)
    if "ssl support is not compiled in" in lowered:
        return errors.ConfigurationError(
            f"{tool} was built without SSL support but the connection needs TLS: {_error_line(text)} "
            "(point --pg-bin-dir at client tools built with OpenSSL)"
        )
    if "server version mismatch" in lowered or "aborting because of server version mismatch" in lowered:
        return errors.ConfigurationError(f"{tool}: {_error_line(text)}")
    if "permission denied" in lowered:
        return errors.AuthenticationError(f"{tool}: {_error_line(text)}")
    if re.search(r"no matching (tables|schemas|extensions|foreign servers) were found", lowered):
        named = [arg.replace("=", " ", 1) for arg in command if arg.startswith(("--table=", "--schema="))]
        return errors.InvalidSpecError(f"{tool}: {_error_line(text)} for {', '.join(named) or 'the scope'}",
                                       reason="NoMatchingObjects")
    if "no space left on device" in lowered:
        return errors.PermanentError(f"{tool}: disk full: {_error_line(text)}", reason="DiskFull")
    if connection_lost(text):
        return errors.TransientError(f"{tool} lost its connection to {settings.describe()}: {_error_line(text)}")
    return errors.TransientError(f"{tool} failed: {_error_line(text)}")


def _error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line.lower() or "fatal:" in line.lower():
            return line[:500]
    return (lines[-1] if lines else "no error output")[:500]


def _widen_pipe(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, CHUNK)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def run_backup(
    settings: connection.ConnectionSettings, target: storage.Storage, options: BackupOptions
) -> BackupOutcome:
    """Dump the database into ``target`` (the storage root) and commit it with a manifest."""
    if options.format not in FORMATS:
        raise errors.InvalidSpecError(f"format must be one of {', '.join(FORMATS)}")
    if options.jobs > 1 and options.format != "directory":
        raise errors.InvalidSpecError("parallel jobs need the directory format")
    compression.compressor(options.codec, options.level)  # validates codec and level early
    scope_args = scope_arguments(options.scope)
    started = datetime.datetime.now(datetime.UTC)
    if isinstance(target, storage.S3Storage):
        target.check_bucket()
    with settings.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        info = connection.server_info(conn)
        tools = pgtools.find_tools(info.major, options.pg_bin_dir)
        folder = backup_folder(target.location, options.namespace, settings.dbname, options.name)
        store = storage.open_storage(folder, _options_of(target))
        aborted = abort_stale_uploads(store, options.abort_incomplete_after)
        if store.exists(MANIFEST_KEY):
            raise errors.InvalidSpecError(f"backup {folder.uri()} already exists", reason="AlreadyExists")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        tables = tables_in_scope(user_tables(conn), options.scope)
        properties = dbproperties.read(conn)
        counted: dict[str, int] = {}
        counting_failure: list[BaseException] = []

        def count() -> None:
            try:
                counted.update(count_rows(conn, [(s, t) for s, t, data in tables if data]))
            except BaseException as error:  # reported after the dump
                counting_failure.append(error)

        counter = threading.Thread(target=count, name="row-counts", daemon=True)
        counter.start()
        command = [tools.path("pg_dump"), f"--snapshot={snapshot}", "--compress=0", *scope_args]
        versions: dict[str, str | None] = {}
        try:
            if options.format == "directory":
                objects = _dump_directory(command, settings, store, options, info.database_size_bytes, versions)
            else:
                objects = [_dump_stream(command, settings, store, options, info.database_size_bytes, versions)]
        finally:
            counter.join()
        if counting_failure:
            store.delete([item.name for item in objects])
            raise connection.connection_error(str(counting_failure[0]), settings)
        conn.rollback()
    manifest = BackupManifest(
        name=options.name, namespace=options.namespace, database=settings.dbname, format=options.format,
        codec=options.codec, compression_level=compression.DEFAULT_LEVELS[options.codec]
        if options.level is None else options.level,
        objects=objects, server_version=info.version, server_version_num=info.version_num,
        dump_tool_version=tools.version, database_size_bytes=info.database_size_bytes, scope=options.scope,
        tables=[TableRows(schema=s, name=t, rows=counted.get(f"{s}.{t}") if data else None) for s, t, data in tables],
        database_properties=properties,
        started_at=started, completed_at=datetime.datetime.now(datetime.UTC), dbops_version=dbops.__version__,
    )
    try:
        store.put_bytes(MANIFEST_KEY, manifest.to_json(), exclusive=True)
    except errors.DbopsError as error:
        if error.reason == "AlreadyExists":
            raise errors.PermanentError(
                f"backup {folder.uri()} was committed by another run meanwhile", reason="AlreadyExists"
            ) from None
        raise
    replaced = [item.name for item in objects if store.version(item.name) != versions.get(item.name)]
    if replaced:  # another run of the same backup overwrote our dump meanwhile: withdraw our manifest
        store.delete([MANIFEST_KEY])
        raise errors.TransientError(
            f"backup {folder.uri()}: {', '.join(replaced)} was replaced while committing (another run of the "
            "same backup?); retry", reason="ConcurrentRun",
        )
    return BackupOutcome(manifest=manifest, location=folder, aborted_uploads=tuple(aborted))


def abort_stale_uploads(store: storage.Storage, max_age: float) -> list[str]:
    """Abort what killed runs left incomplete under the backup's folder, saying so on stderr."""
    aborted = stale.abort_stale(store, max_age)
    for uri in aborted:
        print(f"aborted a stale incomplete upload of an earlier run: {uri}", file=sys.stderr)
    return aborted


def _options_of(target: storage.Storage) -> storage.S3Options | None:
    return target.options if isinstance(target, storage.S3Storage) else None


def _commit(writer: storage.ObjectWriter, store: storage.Storage, name: str,
            versions: dict[str, str | None]) -> int:
    """Commit a dump object unless the backup was committed meanwhile; remember the object's version."""
    if store.exists(MANIFEST_KEY):
        raise errors.PermanentError(f"backup {store.location.uri()} was committed by another run meanwhile",
                                    reason="AlreadyExists")
    size = writer.commit()
    versions[name] = store.version(name)
    return size


def _dump_stream(
    command: list[str], settings: connection.ConnectionSettings, store: storage.Storage,
    options: BackupOptions, expected_size: int, versions: dict[str, str | None],
) -> StoredObject:
    """pg_dump (custom or plain) → compressor → sha256 → one stored object; no temporary file."""
    name = dump_name(options.format, options.codec)
    fmt = "--format=custom" if options.format == "custom" else "--format=plain"
    process = subprocess.Popen(
        [*command, fmt, "--dbname", settings.conninfo()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, env=settings.subprocess_env(), bufsize=CHUNK,
    )
    assert process.stdout is not None and process.stderr is not None
    _widen_pipe(process.stdout)
    stderr = _StderrTail(process.stderr)
    compressor = compression.compressor(options.codec, options.level)
    digest = hashlib.sha256()
    meter = progress.Progress(f"backup {settings.dbname} → {store.location.uri(name)}")
    writer = store.writer(name, expected_size=expected_size)
    try:
        while chunk := process.stdout.read(CHUNK):
            meter.add(len(chunk))
            packed = compressor.compress(chunk)
            if packed:
                digest.update(packed)
                writer.write(packed)
        packed = compressor.flush()
        digest.update(packed)
        writer.write(packed)
        code = process.wait()
        if code != 0:
            raise tool_error("pg_dump", stderr.text(), settings, command)
        size = _commit(writer, store, name, versions)
    except BaseException:
        writer.abort()
        _kill(process)
        raise
    meter.finish()
    return StoredObject(name=name, size_bytes=size, sha256=digest.hexdigest())


def _dump_directory(
    command: list[str], settings: connection.ConnectionSettings, store: storage.Storage,
    options: BackupOptions, expected_size: int, versions: dict[str, str | None],
) -> list[StoredObject]:
    """pg_dump -Fd (parallel) into a staging folder, then each file compressed and stored under ``dump/``."""
    staging = Path(tempfile.mkdtemp(prefix="dbops-dump-"))
    try:
        target = staging / "dump"
        result = subprocess.run(
            [*command, "--format=directory", f"--jobs={options.jobs}", f"--file={target}",
             "--dbname", settings.conninfo()],
            stdin=subprocess.DEVNULL, capture_output=True, env=settings.subprocess_env(), check=False,
        )
        if result.returncode != 0:
            raise tool_error("pg_dump", result.stderr.decode(errors="replace"), settings, command)
        objects = []
        suffix = compression.SUFFIXES[options.codec]
        written: list[str] = []
        try:
            for path in sorted(target.iterdir()):
                name = f"dump/{path.name}{suffix}"
                objects.append(_store_file(path, name, store, options, path.stat().st_size, versions))
                written.append(name)
        except BaseException:
            store.delete(written)
            raise
        return objects
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _store_file(
    path: Path, name: str, store: storage.Storage, options: BackupOptions, size: int,
    versions: dict[str, str | None],
) -> StoredObject:
    compressor = compression.compressor(options.codec, options.level)
    digest = hashlib.sha256()
    writer = store.writer(name, expected_size=size)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                packed = compressor.compress(chunk)
                digest.update(packed)
                writer.write(packed)
        packed = compressor.flush()
        digest.update(packed)
        writer.write(packed)
        stored = _commit(writer, store, name, versions)
    except BaseException:
        writer.abort()
        raise
    return StoredObject(name=name, size_bytes=stored, sha256=digest.hexdigest())
