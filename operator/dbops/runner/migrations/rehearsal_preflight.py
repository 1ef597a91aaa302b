"""Checks before a rehearsal restores its copy: the role may create databases, and the server has room for it."""

from __future__ import annotations

from typing import Protocol

from dbops import errors
from dbops.runner import connection, restore_admin
from dbops.runner.manifest import BackupManifest

SPACE_FACTOR = 2
"""The runbook's margin: the copy itself, and room for the table rewrites the migrations do on it."""


class SpaceReport(Protocol):
    """Where the space figures go (the rehearsal report)."""

    copy_bytes: int
    space_check: str


def server_name(settings: connection.ConnectionSettings) -> str:
    """``host:port`` of a server (no user, no database, no credentials)."""
    return f"{settings.params.get('host', 'localhost')}:{settings.params.get('port', '5432')}"


def check_server(scratch: connection.ConnectionSettings, manifest: BackupManifest, warnings: list[str]) -> None:
    """The server must run the backup's PostgreSQL major or newer: a dump of a newer major does not restore into an
    older one (pg_dump writes settings and syntax it lacks). A newer major restores, with a warning: durations,
    locks and plans there may differ from the target's."""
    with restore_admin.maintenance_connection(scratch) as conn:
        major = conn.info.server_version // 10000
    recorded = manifest.server_version_num // 10000
    where = f"server {server_name(scratch)}"
    if major < recorded:
        raise errors.ConfigurationError(
            f"the rehearsal cannot restore backup {manifest.name} (PostgreSQL {recorded}) on {where}, which runs "
            f"PostgreSQL {major}: a dump does not restore into an older major; rehearse on a server running "
            f"PostgreSQL {recorded} or newer; the database was not touched", reason="RehearsalServerMismatch")
    if major > recorded:
        warnings.append(f"rehearsed on {where} running PostgreSQL {major}, while backup {manifest.name} comes from "
                        f"PostgreSQL {recorded}: durations, locks and query plans may differ on the target")


def check_privileges(scratch: connection.ConnectionSettings) -> None:
    """The role must be able to create the scratch database (CREATEDB or superuser); it then owns it and can drop it.

    Raises AuthenticationError (RehearsalInsufficientPrivileges) naming the role and the privilege it lacks.
    """
    with restore_admin.maintenance_connection(scratch) as conn:
        row = conn.execute("SELECT current_user::text, rolsuper, rolcreatedb FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()
    if row is None:  # current_user is always in pg_roles; kept so a surprise is not a traceback
        return
    role, superuser, createdb = row
    if not (superuser or createdb):
        raise errors.AuthenticationError(
            f'the rehearsal creates, owns and drops the scratch database "{scratch.dbname}" on '
            f'{scratch.describe()}, but role "{role}" lacks the CREATEDB privilege (and is not a superuser): '
            f'grant it (ALTER ROLE "{role}" CREATEDB) or rehearse with a role that has it; the database was not '
            "touched", reason="RehearsalInsufficientPrivileges")


def check_space(manifest: BackupManifest, available_bytes: int | None, report: SpaceReport) -> None:
    """Refuse (RehearsalInsufficientSpace) when twice the database size the backup recorded is more than the space
    the user declared free; without a declaration, say in the report that nothing could be checked."""
    size = manifest.database_size_bytes
    needed = SPACE_FACTOR * size
    report.copy_bytes = size
    basis = (f"the copy needs about {size_text(needed)} ({SPACE_FACTOR}× the {size_text(size)} database size "
             f"recorded in backup {manifest.name})")
    if available_bytes is None:
        report.space_check = (f"not checked: {basis}; PostgreSQL does not report free disk to a client, so set "
                              "rehearsal.availableSpace (--available-space-bytes) to have the rehearsal refuse when "
                              "it does not fit")
        return
    if needed > available_bytes:
        report.space_check = f"failed: {basis}, more than the {size_text(available_bytes)} available"
        raise errors.ConfigurationError(
            f"not enough space for the rehearsal's copy: {basis}, more than the {size_text(available_bytes)} "
            "rehearsal.availableSpace allows; free disk on the server (and raise availableSpace) or rehearse on a "
            "larger server; nothing was restored and the database was not touched",
            reason="RehearsalInsufficientSpace")
    report.space_check = f"passed: {basis}, within the {size_text(available_bytes)} available (as declared)"


def size_text(value: int) -> str:
    """``1.5 GiB``, ``12.0 MiB``, ``512 B``."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} B"
