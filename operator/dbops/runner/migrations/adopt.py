"""Switching to dbops without re-baselining blind: import another tool's history, ``repair`` a checksum.

Imports golang-migrate's ``schema_migrations``, Flyway's ``flyway_schema_history`` or goose's ``goose_db_version``
into ours; ``repair``
accepts a changed checksum with a reason (an applied file edited on purpose, e.g. a comment fixed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from dbops import errors
from dbops.api import versions
from dbops.runner.migrations import flyway, history, lock, source

Connection = psycopg.Connection[Any]
TOOLS = history.OTHER_TOOLS


@dataclass
class Imported:
    """What an import recorded."""

    versions: list[str] = field(default_factory=list)
    """The versions recorded as applied (``imported`` rows), in order."""
    repeatables: dict[str, str] = field(default_factory=dict)
    """Flyway repeatables: ``R__name`` → ``current`` (not re-run) or ``changed`` (runs on the next apply)."""


def import_history(connection: Connection, migrations: list[source.Migration], table: history.HistoryTable,
                   tool: str, their_table: str | None = None, *, wait_seconds: float = 60.0) -> Imported:
    """Record the versions the other tool applied as ``imported`` rows of ours (and Flyway's repeatables).

    Refuses when our history already has rows, when the other tool's history is dirty or has failed
    rows, or when it names a version (or repeatable) the source does not have.
    """
    theirs = history.HistoryTable.parse(their_table or TOOLS[tool])
    with lock.advisory_lock(connection, str(table), wait_seconds):
        if not theirs.exists(connection):
            raise errors.NotFoundError(f"{tool} history table {theirs} does not exist")
        if any(row.success for row in table.rows(connection)):
            raise errors.MigrationError(f"{table} already has a history; import only into an empty one",
                                        reason="HistoryExists")
        repeatable_rows: dict[str, Any] = {}
        if tool == "golang-migrate":
            applied = upto(_golang_migrate(connection, theirs), migrations)
        elif tool == "goose":
            applied = _goose(connection, theirs)
        else:
            applied = _flyway(connection, theirs, migrations)
            repeatable_rows = _flyway_repeatables(connection, theirs, migrations)
        by_number = {m.number: m for m in source.versioned(migrations)}
        missing = [versions.text(v) for v in applied if v not in by_number]
        if missing:
            raise errors.MigrationError(
                f"{tool} history {theirs} records versions {missing[:5]} that are not in the source; "
                "point --source at the same migrations the other tool ran"
                + ("; goose's Go migrations (.go files) have no SQL to import" if tool == "goose" else ""),
                reason="MigrationDrift")
        chosen = [by_number[v] for v in sorted(applied)]
        imported = Imported(versions=[m.version for m in chosen])
        with connection.transaction():
            table.ensure(connection)
            for migration in chosen:
                table.record(connection, version=migration.version, name=migration.name,
                             checksum=migration.checksum, duration_ms=0, success=True, kind="imported")
            for migration, recorded in repeatable_rows.values():
                # Unchanged since Flyway ran it: our checksum, so it does not run again. Changed: Flyway's own
                # checksum kept (it matches no text of ours), so the next apply re-runs it, as Flyway would.
                current = flyway.checksum(migration.up.sql) == recorded
                table.record(connection, version=migration.version, name=migration.name,
                             checksum=migration.checksum if current else f"flyway-crc32:{recorded}",
                             duration_ms=0, success=True, kind="repeatable")
                imported.repeatables[migration.version] = "current" if current else "changed"
    return imported


def _golang_migrate(connection: Connection, theirs: history.HistoryTable) -> list[versions.Key]:
    """golang-migrate keeps one row: the current version and whether the last run broke half-way."""
    row = connection.execute(sql.SQL("SELECT version, dirty FROM {}").format(theirs.identifier)).fetchone()
    if row is None:
        return []
    version, dirty = int(row[0]), bool(row[1])
    if dirty:
        raise errors.MigrationError(
            f"golang-migrate history {theirs} is dirty at version {version} (a migration failed half-way); "
            "fix the schema and run `migrate force` first", reason="DirtyHistory")
    return [versions.key(str(version))]


def _goose(connection: Connection, theirs: history.HistoryTable) -> list[versions.Key]:
    """goose's applied versions, by goose's own rule: a version's newest row (highest id) says whether it is
    applied (older goose inserted a row with ``is_applied = false`` on down; current goose deletes the version's
    rows).
    Version 0 is the row goose writes when it creates the table, no migration. goose may apply out of order
    (``-allow-missing``): the set is taken as recorded, never filled up to the newest."""
    rows = connection.execute(sql.SQL(
        "SELECT DISTINCT ON (version_id) version_id, is_applied FROM {} ORDER BY version_id, id DESC"
    ).format(theirs.identifier)).fetchall()
    return [versions.key(str(version)) for version, applied in rows if applied and int(version) > 0]


def _flyway(connection: Connection, theirs: history.HistoryTable,
            migrations: list[source.Migration]) -> list[versions.Key]:
    """Flyway's applied versions (``1``, ``1.1``, ``2``: dotted versions kept as such), in its order: a
    ``BASELINE`` row stands for every source version up to it, an ``UNDO`` row takes its version back.
    Repeatable rows (no version) are read by ``_flyway_repeatables``."""
    rows = connection.execute(sql.SQL(
        "SELECT version, success, type, checksum, script FROM {} WHERE version IS NOT NULL ORDER BY installed_rank"
    ).format(theirs.identifier)).fetchall()
    failed = [str(version) for version, success, *_ in rows if not success]
    if failed:
        raise errors.MigrationError(f"Flyway history {theirs} has failed versions {failed}; run `flyway repair` "
                                    "first", reason="DirtyHistory")
    applied: dict[versions.Key, None] = {}
    _check_flyway_checksums(rows, migrations)
    for version, _, kind, *_ in rows:
        if not versions.is_version(str(version)):
            raise errors.MigrationError(f"Flyway version {version!r} is not digits separated by '.' or '_'",
                                        reason="InvalidVersion")
        number = versions.key(str(version))
        if str(kind).upper() == "BASELINE":
            applied.update(dict.fromkeys(upto([number], migrations)))
        elif str(kind).upper().startswith("UNDO") or str(kind).upper() == "DELETE":  # DELETE: `flyway repair`
            applied.pop(number, None)
        else:
            applied[number] = None
    return list(applied)


def _flyway_repeatables(connection: Connection, theirs: history.HistoryTable,
                        migrations: list[source.Migration]) -> dict[str, tuple[source.Migration, int | None]]:
    """Flyway's repeatables (rows without a version, by script): the source's ``R__`` migration and the checksum
    of the text Flyway last applied. Its newest row counts (each change re-ran it); a ``DELETE`` row (``flyway
    repair``) takes it back. Refuses a failed newest row, and a repeatable the source does not have."""
    rows = connection.execute(sql.SQL(
        "SELECT script, success, type, checksum FROM {} WHERE version IS NULL AND type IN ('SQL', 'DELETE')"
        " ORDER BY installed_rank").format(theirs.identifier)).fetchall()
    newest: dict[str, tuple[bool, str, int | None]] = {}
    for script, success, kind, recorded in rows:
        name = str(script).replace("\\", "/").rsplit("/", 1)[-1]  # a script in a sub-folder of the location
        if not name.startswith(source.REPEATABLE_PREFIX):
            continue
        newest[name] = (bool(success), str(kind).upper(), None if recorded is None else int(recorded))
    failed = [name for name, (success, kind, _) in newest.items() if kind == "SQL" and not success]
    if failed:
        raise errors.MigrationError(f"Flyway history {theirs} has failed repeatable migrations {failed}; run "
                                    "`flyway repair` first", reason="DirtyHistory")
    by_file = {m.up.file or f"{m.version}.sql": m for m in source.repeatables(migrations)}
    applied = {name: recorded for name, (_, kind, recorded) in newest.items() if kind == "SQL"}
    missing = sorted(set(applied) - set(by_file))
    if missing:
        raise errors.MigrationError(
            f"Flyway history {theirs} records repeatable migrations {missing[:5]} that are not in the source; "
            "point --source at the same migrations Flyway ran (or run `flyway repair` for deleted ones)",
            reason="MigrationDrift")
    return {name: (by_file[name], recorded) for name, recorded in applied.items()}


def _check_flyway_checksums(rows: list[Any], migrations: list[source.Migration]) -> None:
    """Refuse when a script Flyway applied differs from the source's file (its recorded checksum, as Flyway
    computes it, does not match): importing would vouch for text that never ran."""
    by_number = {m.number: m for m in source.versioned(migrations)}
    changed = []
    for version, _, kind, recorded, script in rows:
        if recorded is None or str(kind).upper() != "SQL" or not versions.is_version(str(version)):
            continue
        migration = by_number.get(versions.key(str(version)))
        if migration is not None and flyway.checksum(migration.up.sql) != int(recorded):
            changed.append(f"{migration.up.file or script} (Flyway recorded {recorded}, the file now has "
                           f"{flyway.checksum(migration.up.sql)})")
    if changed:
        raise errors.MigrationError(
            f"{len(changed)} scripts differ from what Flyway applied: {'; '.join(changed[:5])}; restore the applied "
            "text (or run `flyway repair` if the change is intended) before importing", reason="MigrationDrift")


def upto(applied: list[versions.Key], migrations: list[source.Migration]) -> list[versions.Key]:
    """golang-migrate records only the newest version: every source version up to it was applied."""
    newest = max(applied, default=())
    return [m.number for m in source.versioned(migrations) if m.number <= newest]


def repair(connection: Connection, migrations: list[source.Migration], table: history.HistoryTable,
           version: str, reason: str, *, wait_seconds: float = 60.0) -> dict[str, str]:
    """Accept the source's current text of an applied migration: record its checksum with the reason."""
    if not reason.strip():
        raise errors.InvalidSpecError("repair needs --reason: why the applied migration's text changed")
    migration = next((m for m in migrations if m.version == version or (
        not m.repeatable and versions.is_version(version) and m.number == versions.key(version))), None)
    if migration is None:
        raise errors.InvalidSpecError(f"version {version} is not in the source")
    if migration.repeatable:
        raise errors.InvalidSpecError(f"{migration.label} is a repeatable migration: a changed text re-runs it, "
                                      "there is nothing to repair")
    with lock.advisory_lock(connection, str(table), wait_seconds), connection.transaction():
        row = next((r for r in table.rows(connection) if r.number == migration.number and r.success), None)
        if row is None:
            raise errors.MigrationError(f"version {version} is not applied; nothing to repair", reason="NotApplied")
        connection.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS repair_note text").format(
            table.identifier))
        note = f"{reason.strip()} (checksum {row.checksum[:12]}… → {migration.checksum[:12]}…)"
        connection.execute(
            sql.SQL("UPDATE {} SET checksum = %s, repair_note = concat_ws('; ', repair_note, now()::text || ' ' || "
                    "current_user || ': ' || %s) WHERE version = %s").format(table.identifier),
            (migration.checksum, note, row.version),
        )
    return {"version": row.version, "previousChecksum": row.checksum, "checksum": migration.checksum,
            "reason": reason.strip()}
