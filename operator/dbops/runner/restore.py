"""The restore: checksum first, then pg_restore (or psql) into the target, then a row-count comparison."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.runner import artifact, backup, compression, connection, dbverify, pgtools, storage
from dbops.runner.manifest import BackupManifest

MODES = ("full", "tables", "schema-only", "data-only")
_TOC_DATA_LINE = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET) (\S+) (\S+) \S*$")


@dataclasses.dataclass(frozen=True)
class RestoreOptions:
    """How to restore."""

    mode: str = "full"
    tables: tuple[str, ...] = ()
    create: bool = False
    clean: bool = False
    recreate: bool = False
    """Drop and re-create the target database (after the checksums are verified) before a full restore."""
    maintenance_dbname: str = "postgres"
    """The database to connect to for dropping and creating the target."""
    jobs: int = 1
    confirm_overwrite: str = ""
    terminate_connections: bool = False
    row_count_check: bool = True
    no_owner: bool = False
    pg_bin_dir: str | None = None
    checks: tuple[dbverify.UserCheck, ...] = ()
    """SQL checks with expectations run against the restored database."""


@dataclasses.dataclass
class RowCountReport:
    """Per-table row counts of a database compared with a manifest."""

    tables_compared: int = 0
    mismatches: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every compared table matched."""
        return not self.mismatches

    def as_result(self) -> dict[str, Any]:
        """The result-JSON shape ``{passed, tablesCompared, mismatches}``."""
        return {"passed": self.passed, "tablesCompared": self.tables_compared, "mismatches": self.mismatches}


@dataclasses.dataclass
class RestoreOutcome:
    """What a restore did."""

    manifest: BackupManifest
    tables_restored: list[str]
    row_counts: RowCountReport | None
    checks: list[dbverify.CheckResult] = dataclasses.field(default_factory=list)
    recreated: bool = False

    @property
    def passed(self) -> bool:
        """Whether the row counts (when compared) and every check passed."""
        return (self.row_counts is None or self.row_counts.passed) and all(check.passed for check in self.checks)


def resolve_tables(manifest: BackupManifest, requested: tuple[str, ...]) -> list[str]:
    """``schema.table`` names of the requested tables, as listed in the manifest."""
    known = [table.qualified_name for table in manifest.tables]
    resolved = []
    for name in requested:
        matches = [q for q in known if q == name] if "." in name else [q for q in known if q.split(".", 1)[1] == name]
        if not matches:
            raise errors.NotFoundError(f"table {name!r} is not in backup {manifest.name}")
        if len(matches) > 1:
            raise errors.InvalidSpecError(f"table {name!r} is ambiguous ({', '.join(matches)}); qualify it")
        resolved.append(matches[0])
    return resolved


def compare_row_counts(conn: psycopg.Connection[Any], expected: dict[str, int]) -> RowCountReport:
    """Count rows of each table in ``expected`` and list the differences."""
    report = RowCountReport()
    for qualified, rows in sorted(expected.items()):
        schema, name = qualified.split(".", 1)
        try:
            actual = backup.count_rows(conn, [(schema, name)])[qualified]
        except psycopg.errors.UndefinedTable:
            report.mismatches.append(f"{qualified}: missing (expected {rows} rows)")
            continue
        report.tables_compared += 1
        if actual != rows:
            report.mismatches.append(f"{qualified}: {actual} rows, expected {rows}")
    return report


def database_exists(settings: connection.ConnectionSettings) -> bool:
    """Whether the settings' database exists (connecting to it)."""
    try:
        with settings.connect():
            return True
    except errors.NotFoundError:
        return False


@contextlib.contextmanager
def maintenance_connection(
    settings: connection.ConnectionSettings, dbname: str = "postgres"
) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the server's maintenance database (``postgres``, else ``template1``)."""
    with contextlib.ExitStack() as stack:
        try:
            conn = stack.enter_context(settings.with_dbname(dbname).connect())
        except errors.NotFoundError:
            if dbname != "postgres":
                raise
            conn = stack.enter_context(settings.with_dbname("template1").connect())
        yield conn


def create_database(settings: connection.ConnectionSettings, maintenance_dbname: str = "postgres") -> None:
    """``CREATE DATABASE`` from template0."""
    with maintenance_connection(settings, maintenance_dbname) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(settings.dbname)))


def drop_database(settings: connection.ConnectionSettings) -> None:
    """Drop the database, disconnecting its sessions."""
    with maintenance_connection(settings) as conn:
        terminate_connections(conn, settings.dbname)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(settings.dbname)))


_DATABASE_PROPERTIES = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       pg_has_role(current_user, d.datdba, 'MEMBER'),
       (SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user)
FROM pg_database d WHERE d.datname = %s
"""


def recreate_database(settings: connection.ConnectionSettings, maintenance_dbname: str = "postgres") -> None:
    """Drop the database (terminating its sessions) and create it empty with its owner, encoding and locale.

    Privileges are checked first, so a role that could drop but not create never leaves the database gone.
    """
    dbname = settings.dbname
    with maintenance_connection(settings, maintenance_dbname) as conn:
        row = conn.execute(_DATABASE_PROPERTIES, (dbname,)).fetchone()
        if row is None:
            raise errors.NotFoundError(f'database "{dbname}" does not exist on {settings.describe()}')
        owner, encoding, collate, ctype, owner_member, can_create = row
        if not (owner_member and can_create):
            raise errors.AuthenticationError(
                f're-creating database "{dbname}" needs CREATEDB and membership in its owner role "{owner}"',
                reason="InsufficientPrivileges",
            )
        create = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(dbname), sql.Identifier(owner), sql.Literal(encoding), sql.Literal(collate),
            sql.Literal(ctype),
        )
        major = conn.info.server_version // 10000
        if major >= 15:
            locale_column = "datlocale" if major >= 17 else "daticulocale"
            provider_row = conn.execute(
                sql.SQL("SELECT datlocprovider, {} FROM pg_database WHERE datname = %s").format(
                    sql.Identifier(locale_column)), (dbname,),
            ).fetchone()
            if provider_row is not None and provider_row[0] in ("i", "b"):
                provider = "icu" if provider_row[0] == "i" else "builtin"
                locale_option = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
                create += sql.SQL(" LOCALE_PROVIDER {} {} {}").format(
                    sql.SQL(provider), sql.SQL(locale_option), sql.Literal(provider_row[1]))
        if major >= 13:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        else:
            terminate_connections(conn, dbname)
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(dbname)))
        conn.execute(create)


def terminate_connections(conn: psycopg.Connection[Any], dbname: str) -> int:
    """Terminate other sessions on a database; returns how many."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchall()
    return len(rows)


def user_object_count(conn: psycopg.Connection[Any]) -> int:
    """Relations, functions and types in non-system schemas (0 for a fresh database)."""
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
             + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
             + (SELECT count(*) FROM pg_namespace n
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
                  AND n.nspname NOT LIKE 'pg\\_%')
        """
    ).fetchone()
    return int(row[0]) if row else 0


@dataclasses.dataclass(frozen=True)
class _Target:
    """What the restore learned about its target before touching it."""

    server: connection.ServerInfo
    tools: pgtools.PgTools
    clean: bool
    superuser: bool


def _prepare_target(
    settings: connection.ConnectionSettings, options: RestoreOptions, manifest: BackupManifest
) -> _Target:
    """Create the target if asked, refuse unconfirmed overwrites, pick tools, re-create the database or
    terminate sessions if asked."""
    exists = database_exists(settings)
    if not exists:
        if not (options.create or options.recreate):
            raise errors.NotFoundError(
                f'database "{settings.dbname}" does not exist on {settings.describe()} (use --create)'
            )
        create_database(settings, options.maintenance_dbname)
    with settings.connect() as conn:
        server = connection.server_info(conn)
        needed = max(server.major, pgtools.major_of(manifest.dump_tool_version))
        tools = pgtools.find_tools(needed, options.pg_bin_dir)
        clean = options.clean and not options.recreate
        if options.mode in ("full", "schema-only") and not options.recreate and user_object_count(conn) > 0:
            if options.confirm_overwrite != settings.dbname:
                raise errors.InvalidSpecError(
                    f'database "{settings.dbname}" is not empty: restoring over it needs '
                    f"--confirm-overwrite {settings.dbname}",
                    reason="OverwriteNotConfirmed",
                )
            clean = True
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        superuser = bool(row and row[0])
    if options.recreate and exists:
        recreate_database(settings, options.maintenance_dbname)
    elif options.terminate_connections:
        with maintenance_connection(settings, options.maintenance_dbname) as admin:
            terminate_connections(admin, settings.dbname)
    return _Target(server=server, tools=tools, clean=clean, superuser=superuser)


def run_restore(
    store: storage.Storage, settings: connection.ConnectionSettings, options: RestoreOptions
) -> RestoreOutcome:
    """Restore the backup in ``store`` (its folder) into the database of ``settings``."""
    if options.mode not in MODES:
        raise errors.InvalidSpecError(f"mode must be one of {', '.join(MODES)}")
    if (options.mode == "tables") != bool(options.tables):
        raise errors.InvalidSpecError("mode tables needs --table, and --table needs mode tables")
    if options.recreate and options.mode != "full":
        raise errors.InvalidSpecError("--recreate is only used with mode full")
    if options.recreate and options.confirm_overwrite != settings.dbname:
        raise errors.InvalidSpecError(
            f'--recreate drops database "{settings.dbname}": confirm with --confirm-overwrite {settings.dbname}',
            reason="OverwriteNotConfirmed",
        )
    manifest = artifact.load_manifest(store)
    tables = resolve_tables(manifest, options.tables) if options.mode == "tables" else []
    if manifest.format == "plain" and options.mode != "full":
        raise errors.InvalidSpecError("a plain-format backup can only be restored in mode full")
    if options.mode in ("tables", "data-only") and manifest.scope.schema_only:
        raise errors.InvalidSpecError(f"backup {manifest.name} is schema-only: it holds no data to restore")

    with contextlib.ExitStack() as stack:
        # Refuse a bad artifact before anything touches the target.
        local: Path | None = None
        if options.jobs > 1 or manifest.format == "directory":
            local = stack.enter_context(artifact.local_copy(store, manifest))
        else:
            artifact.verify_checksums(store, manifest)
        target = _prepare_target(settings, options, manifest)
        if options.mode == "tables":
            _restore_tables(store, manifest, settings, target, tables, local)
        elif manifest.format == "plain":
            _restore_plain(store, manifest, settings, target)
        else:
            _run_pg_restore(store, manifest, settings, target, options, local)

    restored = tables or [table.qualified_name for table in manifest.tables]
    expected = {} if options.mode == "schema-only" else manifest.rows_by_table()
    if tables:
        expected = {name: rows for name, rows in expected.items() if name in tables}
    report = None
    checks: list[dbverify.CheckResult] = []
    if options.row_count_check or options.checks:
        with settings.connect() as conn:
            if options.row_count_check:
                report = compare_row_counts(conn, expected)
            if options.checks:
                checks = run_checks(conn, options.checks)
    return RestoreOutcome(manifest=manifest, tables_restored=restored, row_counts=report, checks=checks,
                          recreated=options.recreate)


def load_checks(checks_json: str | None = None, checks_file: str | None = None) -> tuple[dbverify.UserCheck, ...]:
    """SQL checks from a JSON list of ``{name, sql, expect}`` and/or a JSON/YAML file of one."""
    checks: tuple[dbverify.UserCheck, ...] = ()
    if checks_json:
        try:
            document = json.loads(checks_json)
        except ValueError as error:
            raise errors.InvalidSpecError(f"--checks-json is not valid JSON: {error}") from error
        checks += dbverify.load_checks(document, "--checks-json")
    if checks_file:
        checks += dbverify.load_checks_file(Path(checks_file))
    names = [check.name for check in checks]
    if len(set(names)) != len(names):
        raise errors.InvalidSpecError(f"check names must be unique: {', '.join(names)}")
    return checks


def run_checks(conn: psycopg.Connection[Any], checks: tuple[dbverify.UserCheck, ...]) -> list[dbverify.CheckResult]:
    """Run SQL checks with expectations (read-only, under a statement timeout) against a database."""
    return dbverify.verify(conn, dbverify.VerifyConfig(builtins=(), checks=checks))


def _pg_restore_error(stderr: str, settings: connection.ConnectionSettings) -> errors.DbopsError:
    text = settings.redact(stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any("connection to server" in line for line in lines):
        return backup.tool_error("pg_restore", text, settings)
    detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")
    return errors.PermanentError(f"restore stopped at the first error: {detail[:600]}", reason="RestoreFailed")


def _wait_or_kill(process: subprocess.Popen[bytes]) -> None:
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


def _sql_pipeline(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings,
    tools: pgtools.PgTools, pg_restore_args: list[str], local: Path | None, *, prologue: str = "",
    filter_settings: bool = False,
) -> None:
    """pg_restore → SQL script → psql in one transaction, stopping at the first error.

    Used for table restores (with a prologue) and for targets older than the tools (with the filter).
    """
    with tempfile.TemporaryDirectory(prefix="dbops-restore-") as work:
        prologue_file = Path(work, "prologue.sql")
        prologue_file.write_text(prologue)
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
                 "--dbname", settings.conninfo(), "-f", str(prologue_file), "-f", "-"],
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
                    _feed_archive(producer, store, manifest, "restore")
            except BaseException:
                _wait_or_kill(producer)
                _wait_or_kill(consumer)
                raise
            producer_code = producer.wait()
            if pump is not None:
                pump.join()
            consumer_code = consumer.wait()
        if producer_code != 0 or consumer_code != 0:
            raise _pg_restore_error(stderr_path.read_text(errors="replace"), settings)


def _pump(source: IO[bytes], sink: IO[bytes]) -> None:
    try:
        drop_unknown_settings(source, sink)
    except (BrokenPipeError, ValueError, OSError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            sink.close()
        source.close()


def _feed_archive(
    process: subprocess.Popen[bytes], store: storage.Storage, manifest: BackupManifest, label: str
) -> None:
    """Stream the (single-object) dump into a process's stdin, checking its checksum on the way."""
    try:
        artifact.stream_verified(store, manifest.objects[0], manifest.codec, artifact.feed_process(process), label)
    finally:
        artifact.close_stdin(process)


def _run_pg_restore(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings, target: _Target,
    options: RestoreOptions, local: Path | None,
) -> None:
    tools = target.tools
    args: list[str] = []
    if target.clean:
        args += ["--clean", "--if-exists"]
    if options.mode == "schema-only":
        args.append("--schema-only")
    if options.mode == "data-only":
        args.append("--data-only")
        if target.superuser:
            args.append("--disable-triggers")
    if options.no_owner:
        args += ["--no-owner", "--no-privileges"]
    if needs_settings_filter(target.server.major, tools.major):
        # pg_restore -j cannot drop the setting older servers reject: one stream through psql instead.
        _sql_pipeline(store, manifest, settings, tools, args, local, filter_settings=True)
        return
    args = [tools.path("pg_restore"), "--exit-on-error", "--dbname", settings.conninfo(), *args]
    if local is not None:
        args += [f"--jobs={options.jobs}"] if options.jobs > 1 else ["--single-transaction"]
        args.append(str(local))
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, env=settings.subprocess_env(),
                                check=False)
        if result.returncode != 0:
            raise _pg_restore_error(result.stderr.decode(errors="replace"), settings)
        return
    args.append("--single-transaction")
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr_file,
                                   env=settings.subprocess_env())
        try:
            _feed_archive(process, store, manifest, "restore")
        except BaseException:
            _wait_or_kill(process)
            raise
        code = process.wait()
        if code != 0:
            stderr_file.seek(0)
            raise _pg_restore_error(stderr_file.read().decode(errors="replace"), settings)


def _restore_plain(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings, target: _Target,
) -> None:
    args = [target.tools.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
            "--dbname", settings.conninfo(), "-f", "-"]
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr_file,
                                   env=settings.subprocess_env())
        sink: Callable[[bytes], object] = artifact.feed_process(process)
        script = SettingsFilter(sink) if needs_settings_filter(target.server.major, pgtools.major_of(manifest.dump_tool_version)) else None
        try:
            try:
                artifact.stream_verified(store, manifest.objects[0], manifest.codec, script or sink, "restore")
                if script is not None:
                    script.flush()
            finally:
                artifact.close_stdin(process)
        except BaseException:
            _wait_or_kill(process)
            raise
        if process.wait() != 0:
            stderr_file.seek(0)
            raise _pg_restore_error(stderr_file.read().decode(errors="replace"), settings)


def _owned_sequences(conn: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    rows = conn.execute(
        """
        SELECT sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname
        FROM pg_depend d
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_namespace sn ON sn.oid = s.relnamespace
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        """
    ).fetchall()
    return sorted({str(seq) for seq, table in rows if table in tables})


def table_data_list(toc: str, tables: list[str], sequences: list[str]) -> str:
    """The lines of a ``pg_restore -l`` listing that restore the data of these tables and sequences."""
    wanted_data = set(tables)
    wanted_sequences = set(sequences)
    selected = []
    for line in toc.splitlines():
        match = _TOC_DATA_LINE.match(line.strip())
        if not match:
            continue
        kind, schema, name = match[1], match[2], match[3]
        qualified = f"{schema}.{name}"
        if (kind == "TABLE DATA" and qualified in wanted_data) or (
            kind == "SEQUENCE SET" and qualified in wanted_sequences
        ):
            selected.append(line)
    return "\n".join(selected) + "\n"


def _archive_listing(
    store: storage.Storage, manifest: BackupManifest, tools: pgtools.PgTools, local: Path | None
) -> str:
    """``pg_restore -l`` of the archive (from the stream it reads only the header and table of contents)."""
    if local is not None:
        result = subprocess.run([tools.path("pg_restore"), "-l", str(local)], capture_output=True, check=False)
        if result.returncode != 0:
            raise errors.VerificationError(f"cannot list the archive: {result.stderr.decode(errors='replace')[:300]}")
        return result.stdout.decode()
    with tempfile.TemporaryFile() as listing:
        process = subprocess.Popen([tools.path("pg_restore"), "-l"], stdin=subprocess.PIPE, stdout=listing,
                                   stderr=subprocess.DEVNULL)
        sink = artifact.feed_process(process)
        decompressor = compression.decompressor(manifest.codec)
        try:
            for chunk in store.read(manifest.objects[0].name):
                sink(decompressor.decompress(chunk))
                if process.poll() is not None:
                    break
        finally:
            artifact.close_stdin(process)
            process.wait()
        listing.seek(0)
        return listing.read().decode()


def _restore_tables(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings, target: _Target,
    tables: list[str], local: Path | None,
) -> None:
    """Replace the rows of some tables with the backup's, in one transaction (FK triggers off as superuser)."""
    tools = target.tools
    with settings.connect() as conn:
        missing = []
        for name in tables:
            row = conn.execute("SELECT to_regclass(%s)", (_quoted(name),)).fetchone()
            if row is None or row[0] is None:
                missing.append(name)
        if missing:
            raise errors.NotFoundError(
                f"tables missing in the target {settings.describe()}: {', '.join(missing)} "
                "(restore the schema first, e.g. mode schema-only or full)"
            )
        sequences = _owned_sequences(conn, tables)
    listing = table_data_list(_archive_listing(store, manifest, tools, local), tables, sequences)
    prologue = ("SET session_replication_role = replica;\n" if target.superuser else "") + "".join(
        f"DELETE FROM ONLY {_quoted(name)};\n" for name in tables
    )
    with tempfile.TemporaryDirectory(prefix="dbops-tables-") as work:
        list_file = Path(work, "restore.list")
        list_file.write_text(listing)
        _sql_pipeline(store, manifest, settings, tools, ["-L", str(list_file)], local, prologue=prologue,
                      filter_settings=needs_settings_filter(target.server.major, tools.major))


def _quoted(qualified: str) -> str:
    schema, name = qualified.split(".", 1)
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'
