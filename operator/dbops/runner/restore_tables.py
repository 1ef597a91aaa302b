"""Table restores: stage the backup's rows, apply a strategy in one transaction, commit if every FK holds."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.runner import connection, pgtools, restore_fkeys, restore_pipes, restore_toc, storage
from dbops.runner.manifest import BackupManifest
from dbops.runner.restore_fkeys import Staged, count, ident, quoted

STRATEGIES = ("replace", "merge", "missing-only")
ON_CONFLICT = ("keep", "overwrite")
_IDENT = r'(?:"(?:[^"]|"")*"|[^\s."(),]+)'
_COPY = re.compile(rf"^COPY ({_IDENT})\.({_IDENT}) \((.*)\) FROM stdin;$")
_SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('((?:[^']|'')*)', (\d+|-\d+), (true|false)\);$")
_ENCODING = re.compile(r"^SET client_encoding = '([A-Za-z0-9_]+)';$")
_BATCH = 1 << 20
_SAMPLE = 5

Conn = psycopg.Connection[Any]


@dataclasses.dataclass
class TableChange:
    """What a table restore did to one table."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    differing: int = 0
    """Rows present in both whose values differ from the backup's (before any update)."""
    differing_keys: list[str] = dataclasses.field(default_factory=list)

    def as_result(self) -> dict[str, int]:
        """The result-JSON shape."""
        return {"inserted": self.inserted, "updated": self.updated, "deleted": self.deleted,
                "differing": self.differing}


def unquote(identifier: str) -> str:
    """An identifier as pg_dump printed it, unquoted."""
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def _split_columns(text: str) -> list[str]:
    return [unquote(column) for column in re.findall(_IDENT, text)]


def _leaf_partitions(conn: Conn, name: str) -> list[str] | None:
    """Leaf partitions of a partitioned table in the target (``schema.table`` or bare name), else None."""
    query = """
        SELECT n.nspname || '.' || c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'p' AND (n.nspname || '.' || c.relname = %s
              OR (position('.' in %s) = 0 AND c.relname = %s AND n.nspname = ANY (current_schemas(false))))
    """
    row = conn.execute(query, (name, name, name)).fetchone()
    if row is None:
        return None
    leaves = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_partition_tree(%s) t JOIN pg_class c ON c.oid = t.relid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf ORDER BY 1", (row[1],),
    ).fetchall()
    return [str(leaf[0]) for leaf in leaves]


def resolve_tables(manifest: BackupManifest, requested: tuple[str, ...], conn: Conn | None = None) -> list[str]:
    """``schema.table`` names of the requested tables in the backup; a partitioned parent names its partitions."""
    known = [table.qualified_name for table in manifest.tables]
    resolved: list[str] = []
    for name in requested:
        matches = [q for q in known if q == name] if "." in name else [q for q in known if q.split(".", 1)[1] == name]
        if not matches and conn is not None and (leaves := _leaf_partitions(conn, name)):
            missing = [leaf for leaf in leaves if leaf not in known]
            if missing:
                raise errors.NotFoundError(
                    f"table {name!r} is partitioned and these partitions are not in backup {manifest.name}: "
                    f"{', '.join(missing)}")
            matches = leaves
        elif len(matches) > 1:
            raise errors.InvalidSpecError(f"table {name!r} is ambiguous ({', '.join(matches)}); qualify it")
        if not matches:
            raise errors.NotFoundError(f"table {name!r} is not in backup {manifest.name}")
        resolved += [match for match in matches if match not in resolved]
    return sorted(resolved)


@dataclasses.dataclass
class _Script:
    staged: dict[str, Staged] = dataclasses.field(default_factory=dict)
    setvals: list[tuple[str, int, bool]] = dataclasses.field(default_factory=list)


def _stage(conn: Conn, lines: IO[bytes], tables: list[str]) -> _Script:
    """Read pg_restore's data script: COPY blocks go into temporary tables, setval calls are collected."""
    script = _Script()
    for raw in lines:
        line = raw.decode(errors="replace").rstrip("\n")
        encoding = _ENCODING.match(line)
        if encoding:
            # COPY rows are passed on as bytes: the session must read them in the dump's encoding.
            conn.execute(sql.SQL("SET client_encoding TO {}").format(sql.Literal(encoding[1])))
            continue
        copy = _COPY.match(line)
        if copy:
            table = f"{unquote(copy[1])}.{unquote(copy[2])}"
            if table not in tables:
                raise errors.VerificationError(f"the archive's data script loads {table}, which was not asked for")
            columns = _split_columns(copy[3])
            stage = f"dbops_stage_{len(script.staged)}"
            column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
            conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM ONLY {} WITH NO DATA")
                         .format(sql.Identifier(stage), column_list, ident(table)))
            script.staged[table] = Staged(table, stage, columns)
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(stage),
                                                                              column_list)) as copier:
                buffer = bytearray()
                for data in lines:
                    if data == b"\\.\n":
                        break
                    buffer += data
                    if len(buffer) >= _BATCH:
                        copier.write(bytes(buffer))
                        buffer.clear()
                copier.write(bytes(buffer))
            continue
        setval = _SETVAL.match(line)
        if setval:
            script.setvals.append((setval[1].replace("''", "'"), int(setval[2]), setval[3] == "true"))
    return script


def _key_columns(conn: Conn, table: str) -> list[str]:
    """The primary key, else the first unique index over NOT NULL columns only (empty: none)."""
    rows = conn.execute(
        """
        SELECT i.indisprimary, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[],
               bool_and(a2.attnotnull)
        FROM pg_index i JOIN pg_attribute a2 ON a2.attrelid = i.indrelid AND a2.attnum = ANY (i.indkey)
        WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indpred IS NULL AND 0 <> ALL (i.indkey)
        GROUP BY i.indexrelid, i.indisprimary, i.indkey, i.indrelid ORDER BY i.indisprimary DESC, i.indexrelid
        """, (quoted(table),),
    ).fetchall()
    for _primary, columns, not_null in rows:
        if not_null:
            return list(columns)
    return []


def _match(left: str, right: str, columns: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(c), sql.Identifier(right),
                                        sql.Identifier(c)) for c in columns)


def _differs(columns: list[str]) -> sql.Composable:
    """Row values differ (compared as text, so types without equality, such as json, work)."""
    def row(alias: str) -> sql.Composable:
        return sql.SQL("ROW({})").format(sql.SQL(", ").join(
            sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns))
    return sql.SQL("{} IS DISTINCT FROM {}").format(row("t"), row("s"))


def _apply(conn: Conn, staged: Staged, strategy: str, overwrite: bool) -> TableChange:
    """Apply one strategy to one table; returns what changed."""
    change = TableChange()
    target, stage, columns = ident(staged.table), sql.Identifier(staged.stage), staged.columns
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    key = [c for c in _key_columns(conn, staged.table) if c in columns]
    if not key:
        if strategy != "replace":
            raise errors.InvalidSpecError(
                f"table {staged.table} has no primary key or unique NOT NULL index: strategy {strategy} needs one "
                "to match rows (use strategy replace)", reason="NoKey")
        change.deleted = conn.execute(sql.SQL("DELETE FROM ONLY {}").format(target)).rowcount
        change.inserted = conn.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}")
                                       .format(target, column_list, column_list, stage)).rowcount
        return change
    matched = _match("t", "s", key)
    others = [c for c in columns if c not in key]
    if strategy != "missing-only" and others:
        differing = sql.SQL("FROM ONLY {} t JOIN {} s ON {} WHERE {}").format(target, stage, matched,
                                                                             _differs(others))
        change.differing = count(conn, sql.SQL("SELECT count(*) ") + differing)
        if change.differing:
            keys = conn.execute(sql.SQL("SELECT {} ").format(sql.SQL(", ").join(
                sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in key)) + differing
                + sql.SQL(" ORDER BY 1 LIMIT {}").format(sql.Literal(_SAMPLE))).fetchall()
            change.differing_keys = [", ".join(str(v) for v in row) for row in keys]
        if strategy == "replace" or overwrite:
            assignments = sql.SQL(", ").join(sql.SQL("{} = s.{}").format(sql.Identifier(c), sql.Identifier(c))
                                             for c in others)
            change.updated = conn.execute(sql.SQL("UPDATE ONLY {} t SET {} FROM {} s WHERE {} AND {}").format(
                target, assignments, stage, matched, _differs(others))).rowcount
    if strategy == "replace":
        change.deleted = conn.execute(sql.SQL("DELETE FROM ONLY {} t WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE {})")
                                      .format(target, stage, matched)).rowcount
    change.inserted = conn.execute(sql.SQL(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} s WHERE NOT EXISTS "
        "(SELECT 1 FROM ONLY {} t WHERE {})").format(
        target, column_list, sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns),
        stage, target, matched)).rowcount
    return change


def _set_sequences(conn: Conn, setvals: list[tuple[str, int, bool]], strategy: str) -> None:
    for sequence, value, called in setvals:
        if strategy != "replace":
            # Never move a sequence back below values rows may already use.
            row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                sql.Identifier(*sequence.split(".", 1)))).fetchone()
            if row is not None and (row[0], row[1]) >= (value, called):
                continue
        conn.execute("SELECT pg_catalog.setval(%s, %s, %s)", (sequence, value, called))


def apply_in_transaction(conn: Conn, lines: IO[bytes], tables: list[str], *, strategy: str, overwrite: bool,
                         superuser: bool, wait_for_source: Any) -> dict[str, TableChange]:
    """Stage, check, apply and verify in the connection's open transaction; raises to roll back."""
    for table in tables:
        conn.execute(sql.SQL("LOCK TABLE ONLY {} IN EXCLUSIVE MODE").format(ident(table)))
    script = _stage(conn, lines, tables)
    wait_for_source()  # the archive's checksum and pg_restore's exit are known before anything changes
    absent = [t for t in tables if t not in script.staged]
    if absent:
        raise errors.VerificationError(f"the archive holds no data for {', '.join(absent)}")
    keys = restore_fkeys.foreign_keys(conn, tables)
    if strategy == "replace":
        doomed = [(key, restore_fkeys.doomed_references(conn, key, script.staged)) for key in keys]
        problems = [f"{key.name}: {n} rows of {key.child} reference rows of {key.parent} that the backup does "
                    "not have" for key, n in doomed if n]
        if problems:
            raise restore_fkeys.violation(tables, problems, strategy)
    before = {key: restore_fkeys.orphans(conn, key) for key in keys}
    if superuser:
        # Triggers (FK actions such as ON DELETE CASCADE included) stay off; every key is checked below instead.
        conn.execute("SET LOCAL session_replication_role = replica")
    changes = {}
    try:
        for table in tables:
            changes[table] = _apply(conn, script.staged[table], strategy, overwrite)
    except psycopg.errors.ForeignKeyViolation as error:
        raise restore_fkeys.violation(tables, [str(error.diag.message_primary or error).strip() + (
            f" ({error.diag.message_detail})" if error.diag.message_detail else "")], strategy) from None
    _set_sequences(conn, script.setvals, strategy)
    if superuser:
        conn.execute("SET LOCAL session_replication_role = origin")
    problems = []
    for key in keys:
        added = restore_fkeys.orphans(conn, key) - before[key]
        if added > 0:
            problems.append(f"{key.name}: {added} rows of {key.child} have no match in {key.parent}")
    if problems:
        raise restore_fkeys.violation(tables, problems, strategy)
    return changes


def restore_tables(
    store: storage.Storage, manifest: BackupManifest, settings: connection.ConnectionSettings,
    tools: pgtools.PgTools, tables: list[str], local: Path | None, *, strategy: str, overwrite: bool,
    superuser: bool,
) -> dict[str, TableChange]:
    """Restore the rows of some tables with a strategy, in one transaction that commits only if FKs hold."""
    with settings.connect(autocommit=False) as conn:
        missing = [name for name in tables
                   if (row := conn.execute("SELECT to_regclass(%s)", (quoted(name),)).fetchone()) is None
                   or row[0] is None]
        if missing:
            raise errors.NotFoundError(
                f"tables missing in the target {settings.describe()}: {', '.join(missing)} "
                "(restore the schema first, e.g. mode schema-only or full)")
        sequences = restore_toc.owned_sequences(conn, tables)
        conn.rollback()
        listing = restore_toc.table_data_list(restore_toc.archive_listing(store, manifest, tools, local), tables,
                                              sequences)
        with _data_script(store, manifest, tools, listing, local, settings) as (lines, wait):
            changes = apply_in_transaction(conn, lines, tables, strategy=strategy, overwrite=overwrite,
                                           superuser=superuser, wait_for_source=wait)
        conn.commit()
    return changes


@contextlib.contextmanager
def _data_script(
    store: storage.Storage, manifest: BackupManifest, tools: pgtools.PgTools, listing: str, local: Path | None,
    settings: connection.ConnectionSettings,
) -> Iterator[tuple[IO[bytes], Any]]:
    """pg_restore's SQL script for the listed entries, read from its stdout; ``wait()`` raises if it failed."""
    with tempfile.TemporaryDirectory(prefix="dbops-tables-") as work:
        list_file = Path(work, "restore.list")
        list_file.write_text(listing)
        with open(Path(work, "stderr"), "w+b") as stderr_file:
            process = subprocess.Popen(
                [tools.path("pg_restore"), "-L", str(list_file), "-f", "-", *([str(local)] if local else [])],
                stdin=subprocess.PIPE if local is None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr_file)
            assert process.stdout is not None
            failure: list[BaseException] = []

            def feed() -> None:
                try:
                    restore_pipes.feed_archive(process, store, manifest, "restore")
                except BaseException as error:  # re-raised in the main thread by wait()
                    failure.append(error)

            feeder = threading.Thread(target=feed, daemon=True) if local is None else None
            if feeder is not None:
                feeder.start()

            def wait() -> None:
                if feeder is not None:
                    feeder.join()
                if failure:
                    raise failure[0]
                if process.wait() != 0:
                    stderr_file.seek(0)
                    raise restore_pipes.pg_restore_error(stderr_file.read().decode(errors="replace"), settings)

            try:
                yield process.stdout, wait
            finally:
                restore_pipes.wait_or_kill(process)
                if feeder is not None:
                    feeder.join(timeout=30)
