"""The one exception tree of dbops, split into retryable and permanent failures.

    DbopsError
     ├── PermanentError            the input or the world is wrong; retrying cannot help
     │    ├── InvalidSpecError      a spec or CLI argument is invalid
     │    ├── MissingReferenceError a referenced Secret/ConfigMap/backup does not exist (retried by the operator)
     │    ├── VerificationError     an artifact or a database failed a check
     │    ├── ConfigurationError    tools or versions unsuitable (e.g. pg_dump older than the server)
     │    ├── AuthenticationError   PostgreSQL or S3 refused the credentials
     │    ├── NotFoundError         a database, bucket or artifact is missing
     │    └── MigrationError        a migration failed, drifted or is unsafe
     └── TransientError            may succeed later (network, lock held, server starting)
          └── LockTimeoutError      another runner holds the lock
"""

from __future__ import annotations


class DbopsError(Exception):
    """Base of every error dbops raises on purpose."""

    reason: str = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        """The human-readable message (already redacted by whoever raised it)."""
        return str(self)


class PermanentError(DbopsError):
    """A failure that retrying with the same input cannot fix."""

    reason = "PermanentFailure"


class InvalidSpecError(PermanentError):
    """A spec or command-line argument is invalid."""

    reason = "InvalidSpec"


class MissingReferenceError(PermanentError):
    """A referenced Secret, ConfigMap or backup does not exist."""

    reason = "MissingReference"


class VerificationError(PermanentError):
    """An artifact or database failed verification."""

    reason = "VerificationFailed"


class ConfigurationError(PermanentError):
    """The tools or versions at hand cannot do the work."""

    reason = "Unsupported"


class AuthenticationError(PermanentError):
    """A server refused the credentials."""

    reason = "AuthenticationFailed"


class NotFoundError(PermanentError):
    """A database, bucket or artifact does not exist."""

    reason = "NotFound"


class MigrationError(PermanentError):
    """A migration failed, drifted or was refused as unsafe."""

    reason = "MigrationFailed"


class TransientError(DbopsError):
    """A failure that may go away when retried later."""

    reason = "TransientFailure"


class LockTimeoutError(TransientError):
    """Another runner holds the lock we need."""

    reason = "LockHeld"
