"""Which run of a DatabaseMigration a pass works on: a new revision's, a retry's (dbops.io/retry), or the current."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from dbops.api import versions
from dbops.api.migration import DatabaseMigrationStatus
from dbops.reconcile import retry
from dbops.reconcile.actions import Decision

IDLE_PHASES = frozenset({"Pending", "Waiting", "AwaitingApproval"})


def new_revision(status: DatabaseMigrationStatus, revision: str) -> bool:
    """Whether this pass starts a run of a new revision (the previous run ended, or had not started work)."""
    return status.source_hash != revision and (status.is_terminal or status.phase in IDLE_PHASES)


def adopts_revision(status: DatabaseMigrationStatus, revision: str, *, generation: int,
                    recorded_files: Mapping[str, str] | None, files: Mapping[str, str]) -> bool:
    """Whether a finished run recorded under another revision hash is this spec's run: its status describes this
    generation and its source snapshot holds these files. An operator before this one hashed every defaulted
    field, so a field added with a default changed every revision and an upgrade re-ran each finished migration
    (a pre-migration backup, approval again, the framework command again)."""
    source = {name: text for name, text in files.items() if versions.SOURCE_FILE.match(name)}
    return (status.is_terminal and bool(status.source_hash) and status.source_hash != revision
            and status.observed_generation == generation
            and recorded_files is not None and dict(recorded_files) == source)


def run_attempt(status: DatabaseMigrationStatus, revision: str) -> int:
    """The attempt this pass works on (its Jobs' and children's names): a new revision's run is the next one,
    unless the run it replaces had not started work (see dbops.reconcile.retry.superseded)."""
    if new_revision(status, revision) and retry.counted(status):
        return status.attempt + 1
    return status.attempt


def next_revision_run(status: DatabaseMigrationStatus, revision: str, token: str | None) -> DatabaseMigrationStatus:
    """The status a new revision's run starts from: the database's version and the conditions kept (Failed goes
    when it starts work), the replaced run in previousAttempts."""
    fresh = DatabaseMigrationStatus(current_version=status.current_version, source_hash=revision,
                                    conditions=status.conditions, attempts=run_attempt(status, revision))
    return retry.superseded(status, fresh, token, source_hash=status.source_hash,
                            children=(status.backup_name, status.restore_name))


def retry_migration(status: DatabaseMigrationStatus, token: str | None, *, generation: int,
                    now: datetime) -> Decision | None:
    """A finished migration of the current revision and its retry token (see dbops.reconcile.retry): the new
    attempt keeps the database's version and the revision, and plans, is approved and checked again."""
    def fresh(old: DatabaseMigrationStatus) -> DatabaseMigrationStatus:
        return DatabaseMigrationStatus(current_version=old.current_version, source_hash=old.source_hash)

    return retry.retry(status, token, fresh, generation=generation, now=now, source_hash=status.source_hash,
                       children=(status.backup_name, status.restore_name),
                       ignored="it is not applied again; a changed source or spec starts a new run")
