"""The restore: checksum first, then pg_restore (or psql, or a staged table restore) into the target, then checks."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

from dbops import errors
from dbops.api.common import SqlCheck
from dbops.runner import artifact, connection, dbverify, pgtools, restore_admin, restore_checks, restore_pipes, storage
from dbops.runner import restore_tables as tables_mode
from dbops.runner.manifest import BackupManifest

MODES = ("full", "tables", "schema-only", "data-only")
STRATEGIES = tables_mode.STRATEGIES
ON_CONFLICT = tables_mode.ON_CONFLICT


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
    checks: tuple[SqlCheck, ...] = ()
    """SQL checks with expectations run against the restored database."""
    strategy: str = "replace"
    """Mode tables: replace (rows become the backup's), merge (add missing rows, report differing ones) or
    missing-only (add missing rows)."""
    on_conflict: str = "keep"
    """Mode tables, strategy merge: keep rows that differ from the backup, or overwrite them."""

    @property
    def overwrites_rows(self) -> bool:
        """Whether a table restore may change or delete existing rows (and so needs confirmation)."""
        return self.strategy == "replace" or (self.strategy == "merge" and self.on_conflict == "overwrite")



@dataclasses.dataclass
class RestoreOutcome:
    """What a restore did."""

    manifest: BackupManifest
    tables_restored: list[str]
    row_counts: restore_checks.RowCountReport | None
    checks: list[dbverify.CheckResult] = dataclasses.field(default_factory=list)
    recreated: bool = False
    changes: dict[str, tables_mode.TableChange] = dataclasses.field(default_factory=dict)
    """Mode tables: what changed per table."""

    @property
    def passed(self) -> bool:
        """Whether the row counts (when compared) and every check passed."""
        return (self.row_counts is None or self.row_counts.passed) and all(check.passed for check in self.checks)



@dataclasses.dataclass(frozen=True)
class _Target:
    """What the restore learned about its target before touching it."""

    server: connection.ServerInfo
    tools: pgtools.PgTools
    clean: bool
    superuser: bool


def _confirmed(options: RestoreOptions, settings: connection.ConnectionSettings, what: str) -> None:
    if options.confirm_overwrite != settings.dbname:
        raise errors.InvalidSpecError(f"{what}: confirm with --confirm-overwrite {settings.dbname}",
                                      reason="OverwriteNotConfirmed")


def _prepare_target(
    settings: connection.ConnectionSettings, options: RestoreOptions, manifest: BackupManifest
) -> _Target:
    """Create the target if asked, refuse unconfirmed overwrites, pick tools, re-create the database or
    terminate sessions if asked."""
    exists = restore_admin.database_exists(settings)
    if not exists:
        if not (options.create or options.recreate):
            raise errors.NotFoundError(
                f'database "{settings.dbname}" does not exist on {settings.describe()} (use --create)'
            )
        restore_admin.create_database(settings, options.maintenance_dbname)
    with settings.connect() as conn:
        server = connection.server_info(conn)
        needed = max(server.major, pgtools.major_of(manifest.dump_tool_version))
        tools = pgtools.find_tools(needed, options.pg_bin_dir)
        clean = options.clean and not options.recreate
        if options.mode in ("full", "schema-only") and not options.recreate and restore_admin.user_object_count(conn):
            _confirmed(options, settings, f'database "{settings.dbname}" is not empty: restoring over it')
            clean = True
        if options.mode == "data-only" and (filled := restore_admin.tables_with_rows(conn)):
            _confirmed(options, settings, f'database "{settings.dbname}" already has rows (in '
                       f"{', '.join(filled)}): a data-only restore adds the backup's rows to them")
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        superuser = bool(row and row[0])
    if options.recreate and exists:
        skipped = restore_admin.recreate_database(settings, options.maintenance_dbname,
                                                  manifest.database_properties)
        for problem in skipped:
            print(f"warning: not re-applied to the re-created database: {problem}", file=sys.stderr)
    elif options.terminate_connections:
        with restore_admin.maintenance_connection(settings, options.maintenance_dbname) as admin:
            restore_admin.terminate_connections(admin, settings.dbname)
    return _Target(server=server, tools=tools, clean=clean, superuser=superuser)


def _validate(options: RestoreOptions, settings: connection.ConnectionSettings) -> None:
    if options.mode not in MODES:
        raise errors.InvalidSpecError(f"mode must be one of {', '.join(MODES)}")
    if (options.mode == "tables") != bool(options.tables):
        raise errors.InvalidSpecError("mode tables needs --table, and --table needs mode tables")
    if options.strategy not in STRATEGIES or options.on_conflict not in ON_CONFLICT:
        raise errors.InvalidSpecError(f"strategy must be one of {', '.join(STRATEGIES)} and on-conflict one of "
                                      f"{', '.join(ON_CONFLICT)}")
    if options.mode != "tables" and (options.strategy != "replace" or options.on_conflict != "keep"):
        raise errors.InvalidSpecError("--strategy and --on-conflict are only used with mode tables")
    if options.on_conflict == "overwrite" and options.strategy != "merge":
        raise errors.InvalidSpecError("--on-conflict overwrite is only used with strategy merge")
    if options.recreate and options.mode != "full":
        raise errors.InvalidSpecError("--recreate is only used with mode full")
    if options.recreate:
        _confirmed(options, settings, f'--recreate drops database "{settings.dbname}"')
    if options.mode == "tables" and options.overwrites_rows:
        what = "replaces every row" if options.strategy == "replace" else "overwrites rows that differ"
        _confirmed(options, settings, f"a table restore with strategy {options.strategy} {what} of "
                   f"{', '.join(options.tables)} in database \"{settings.dbname}\"")


def run_restore(
    store: storage.Storage, settings: connection.ConnectionSettings, options: RestoreOptions
) -> RestoreOutcome:
    """Restore the backup in ``store`` (its folder) into the database of ``settings``."""
    _validate(options, settings)
    manifest = artifact.load_manifest(store)
    tables: list[str] = []
    if options.mode == "tables":
        with settings.connect() as conn:
            tables = tables_mode.resolve_tables(manifest, options.tables, conn)
    if manifest.format == "plain" and options.mode != "full":
        raise errors.InvalidSpecError("a plain-format backup can only be restored in mode full")
    if options.mode in ("tables", "data-only") and manifest.scope.schema_only:
        raise errors.InvalidSpecError(f"backup {manifest.name} is schema-only: it holds no data to restore")

    changes: dict[str, tables_mode.TableChange] = {}
    with contextlib.ExitStack() as stack:
        # Refuse a bad artifact before anything touches the target.
        local: Path | None = None
        if options.jobs > 1 or manifest.format == "directory":
            local = stack.enter_context(artifact.local_copy(store, manifest))
        else:
            artifact.verify_checksums(store, manifest)
        target = _prepare_target(settings, options, manifest)
        if options.mode == "tables":
            changes = tables_mode.restore_tables(
                store, manifest, settings, target.tools, tables, local, strategy=options.strategy,
                overwrite=options.on_conflict == "overwrite", superuser=target.superuser)
        elif manifest.format == "plain":
            restore_pipes.restore_plain(store, manifest, settings, target.tools, target.server.major)
        else:
            restore_pipes.run_pg_restore(store, manifest, settings, target.tools, target.server.major,
                                         _pg_restore_args(options, target), options.jobs, local)

    restored = tables or [table.qualified_name for table in manifest.tables]
    expected = {} if options.mode == "schema-only" else manifest.rows_by_table()
    if tables:
        expected = {name: rows for name, rows in expected.items() if name in tables}
    report = None
    checks: list[dbverify.CheckResult] = []
    if options.row_count_check or options.checks:
        with settings.connect() as conn:
            if options.row_count_check:
                # Merged tables keep newer rows: they hold at least the backup's.
                report = restore_checks.compare_row_counts(
                    conn, expected, at_least=options.mode == "tables" and options.strategy != "replace")
            if options.checks:
                checks = restore_checks.run_checks(conn, options.checks)
    return RestoreOutcome(manifest=manifest, tables_restored=restored, row_counts=report, checks=checks,
                          recreated=options.recreate, changes=changes)


def _pg_restore_args(options: RestoreOptions, target: _Target) -> list[str]:
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
    return args
