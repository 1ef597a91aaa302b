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


REPEATABLE_ROLES = frozenset({JobRole.BACKUP, JobRole.VERIFY, JobRole.DELETE, JobRole.PLAN, JobRole.CHECK,
                              JobRole.REHEARSE, JobRole.SMOKE, JobRole.TRIGGER})
"""Roles whose Job may start again when it vanished before its result was read: they only read (verify, plan,
check, smoke tests, which must be repeatable anyway), work on a scratch copy they drop (rehearse), or recognise
their own earlier run (a backup run reports the artifact its resource already committed instead of dumping again;
delete is done when nothing is left). A restore, an apply or a framework command changes the target database and
must never run twice unasked: losing one ends the resource with JobLost."""
