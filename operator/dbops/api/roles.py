"""The roles of runner Jobs: the dbops.io/role label, the Job name part and the builder each kind looks up."""

from __future__ import annotations

from enum import StrEnum


class JobRole(StrEnum):
    """What a runner Job does."""

    BACKUP = "backup"
    VERIFY = "verify"
    """Verify a stored backup (DatabaseBackup) or the database after a command migration (DatabaseMigration)."""
    DELETE = "delete"
    RESTORE = "restore"
    PLAN = "plan"
    CHECK = "check"
    APPLY = "apply"
    COMMAND = "command"
    REHEARSE = "rehearse"
    """Apply the plan to a copy restored from a backup (DatabaseMigration.spec.rehearsal)."""
    SMOKE = "smoke"
    """A DatabaseMigration's smoke test (verify.jobs) in the user's image."""
    TRIGGER = "trigger"
