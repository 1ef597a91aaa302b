"""The backup: pg_dump streamed through compression and sha256 into storage, manifest written last."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

import dbops
from dbops import errors
from dbops.runner import (
    backup_commit,
    backup_scope,
    compression,
    connection,
    dbproperties,
    lease,
    pgtools,
    progress,
    stale,
    storage,
    storage_s3,
    tool_errors,
)
from dbops.runner.manifest import (
    MANIFEST_KEY,
    BackupManifest,
    BackupScope,
    DatabaseProperties,
    StoredObject,
    TableRows,
    committed_by_this_run,
)

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
    lease_ttl: float = 180.0
    """Seconds without renewal after which the folder's commit lease is stale (renewed every third of it)."""
    lease_wait: float = 120.0
    """Seconds to wait for a live holder of the commit lease before failing ConcurrentRun."""
    run_id: str = ""
    """Who the backup is for (the operator passes the DatabaseBackup's uid), recorded in the manifest: a run with
    the same id that finds the backup already committed reports it instead of failing AlreadyExists."""


@dataclasses.dataclass(frozen=True)
class BackupOutcome:
    """A committed backup: its manifest and where it lives."""

    manifest: BackupManifest
    location: storage.Location
    aborted_uploads: tuple[str, ...] = ()
    """Stale incomplete uploads (or partial files) of earlier runs that were removed first."""
    took_over: lease.Holder | None = None
    """The holder of a stale commit lease this run took over (a killed run of the same backup)."""
    adopted: bool = False
    """The backup was committed by an earlier run for the same run id (its Job's result was lost): reported as is."""

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
    scope_args = backup_scope.scope_arguments(options.scope)
    started = datetime.datetime.now(datetime.UTC)
    if isinstance(target, storage_s3.S3Storage):
        target.check_bucket()
    with settings.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        info = connection.server_info(conn)
        tools = pgtools.find_tools(info.major, options.pg_bin_dir)
        folder = backup_folder(target.location, options.namespace, settings.dbname, options.name)
        store = storage.open_storage(folder, _options_of(target))
        aborted = abort_stale_uploads(store, options.abort_incomplete_after)
        if store.exists(MANIFEST_KEY):
            earlier = committed_by_this_run(store, options.run_id)
            if earlier is not None:
                return BackupOutcome(manifest=earlier, location=folder, aborted_uploads=tuple(aborted), adopted=True)
            raise errors.InvalidSpecError(f"backup {folder.uri()} already exists", reason="AlreadyExists")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        tables = backup_scope.tables_in_scope(backup_scope.user_tables(conn), options.scope)
        properties = dbproperties.read(conn)
        counted: dict[str, int] = {}
        counting_failure: list[BaseException] = []

        def count() -> None:
            try:
                counted.update(backup_scope.count_rows(conn, [(s, t) for s, t, data in tables if data]))
            except BaseException as error:  # reported after the dump
                counting_failure.append(error)

        counter = threading.Thread(target=count, name="row-counts", daemon=True)
        counter.start()
        command = [tools.path("pg_dump"), f"--snapshot={snapshot}", "--compress=0", *scope_args]
        commits = backup_commit.Commits(store, options.lease_ttl, options.lease_wait, options.abort_incomplete_after)
        try:
            try:
                if options.format == "directory":
                    objects = _dump_directory(command, settings, store, options, commits)
                else:
                    objects = [_dump_stream(command, settings, store, options, info.database_size_bytes, commits)]
            finally:
                counter.join()
            if counting_failure:
                raise connection.connection_error(str(counting_failure[0]), settings)
            conn.rollback()
            manifest = _manifest(options, settings, info, tools.version, objects, tables, counted, properties, started)
            # The commit phase: every dump object made visible, then the manifest, back to back.
            commits.commit_all()
            commits.check()
            backup_commit.commit_manifest(store, manifest, objects, commits.versions)
        except BaseException:
            commits.abort_sealed()
            raise
        finally:
            commits.release()
    return BackupOutcome(manifest=manifest, location=folder, aborted_uploads=tuple(aborted),
                         took_over=commits.took_over)


def _manifest(options: BackupOptions, settings: connection.ConnectionSettings, info: connection.ServerInfo,
              tool_version: str, objects: list[StoredObject], tables: list[tuple[str, str, bool]],
              counted: dict[str, int], properties: DatabaseProperties,
              started: datetime.datetime) -> BackupManifest:
    return BackupManifest(
        name=options.name, namespace=options.namespace, database=settings.dbname, format=options.format,
        codec=options.codec, compression_level=compression.DEFAULT_LEVELS[options.codec]
        if options.level is None else options.level,
        objects=objects, server_version=info.version, server_version_num=info.version_num,
        dump_tool_version=tool_version, database_size_bytes=info.database_size_bytes, scope=options.scope,
        tables=[TableRows(schema=s, name=t, rows=counted.get(f"{s}.{t}") if data else None) for s, t, data in tables],
        database_properties=properties,
        started_at=started, completed_at=datetime.datetime.now(datetime.UTC), dbops_version=dbops.__version__,
        run_id=options.run_id,
    )


def abort_stale_uploads(store: storage.Storage, max_age: float) -> list[str]:
    """Abort what killed runs left incomplete under the backup's folder, saying so on stderr."""
    aborted = stale.abort_stale(store, max_age)
    for uri in aborted:
        print(f"aborted a stale incomplete upload of an earlier run: {uri}", file=sys.stderr)
    return aborted


def _options_of(target: storage.Storage) -> storage.S3Options | None:
    return target.options if isinstance(target, storage_s3.S3Storage) else None


def _dump_stream(
    command: list[str], settings: connection.ConnectionSettings, store: storage.Storage,
    options: BackupOptions, expected_size: int, commits: backup_commit.Commits,
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
    stderr = tool_errors.StderrTail(process.stderr)
    compressor = compression.compressor(options.codec, options.level)
    digest = hashlib.sha256()
    meter = progress.Progress(f"backup {settings.dbname} → {store.location.uri(name)}")
    writer = store.writer(name, expected_size=expected_size)
    size = 0
    try:
        while chunk := process.stdout.read(CHUNK):
            meter.add(len(chunk))
            packed = compressor.compress(chunk)
            if packed:
                digest.update(packed)
                writer.write(packed)
                size += len(packed)
        packed = compressor.flush()
        digest.update(packed)
        writer.write(packed)
        size += len(packed)
        code = process.wait()
        if code != 0:
            raise tool_errors.tool_error("pg_dump", stderr.text(), settings, command)
        commits.seal(writer, name)
    except BaseException:
        writer.abort()
        _kill(process)
        raise
    meter.finish()
    return StoredObject(name=name, size_bytes=size, sha256=digest.hexdigest())


def _dump_directory(
    command: list[str], settings: connection.ConnectionSettings, store: storage.Storage,
    options: BackupOptions, commits: backup_commit.Commits,
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
            raise tool_errors.tool_error("pg_dump", result.stderr.decode(errors="replace"), settings, command)
        # Every file is uploaded and sealed (invisible) under the lease; all are committed right before the
        # manifest, so a run killed mid-upload leaves no object at a final key, only incomplete uploads.
        commits.begin()
        objects: list[StoredObject] = []
        suffix = compression.SUFFIXES[options.codec]
        for path in sorted(target.iterdir()):
            name = f"dump/{path.name}{suffix}"
            commits.stop_if_lost()
            writer = store.writer(name, expected_size=path.stat().st_size)
            try:
                objects.append(_store_file(path, name, writer, options))
            except BaseException:
                writer.abort()
                raise
            commits.seal(writer, name)
        return objects
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _store_file(path: Path, name: str, writer: storage.ObjectWriter, options: BackupOptions) -> StoredObject:
    """Compress one file of the directory dump into ``writer`` (sealed and committed later, with the rest)."""
    compressor = compression.compressor(options.codec, options.level)
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            packed = compressor.compress(chunk)
            digest.update(packed)
            writer.write(packed)
            size += len(packed)
    packed = compressor.flush()
    digest.update(packed)
    writer.write(packed)
    return StoredObject(name=name, size_bytes=size + len(packed), sha256=digest.hexdigest())
