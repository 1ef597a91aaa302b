"""A failed pg_dump, pg_restore or psql by what went wrong: its stderr tail turned into a clear DbopsError."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Sequence
from typing import IO

from dbops import errors
from dbops.runner import connection


class StderrTail:
    """Collects the end of a subprocess's stderr in a thread."""

    def __init__(self, stream: IO[bytes], limit: int = 200) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=limit)
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line.decode(errors="replace").rstrip())

    def text(self) -> str:
        """What was collected so far (waits briefly for the stream to end)."""
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


CONNECTION_LOST = (
    "server closed the connection unexpectedly", "terminating connection due to administrator command",
    "the database system is shutting down", "the database system is starting up",
    "the database system is in recovery mode", "connection to server was lost", "could not receive data from server",
    "could not send data to server", "ssl syscall error",
)


def connection_lost(text: str) -> bool:
    """Whether a tool's error output says the server went away mid-work (a restart, failover or network cut)."""
    lowered = text.lower()
    return any(marker in lowered for marker in CONNECTION_LOST)


def tool_error(tool: str, stderr: str, settings: connection.ConnectionSettings,
               command: Sequence[str] = ()) -> errors.DbopsError:
    """A clear error for a failed pg_dump/pg_restore/psql from its stderr (``command``: its argv, for names)."""
    text = settings.redact(stderr)
    lowered = text.lower()
    if "connection to server" in lowered and ("failed" in lowered or "refused" in lowered):
        return connection.connection_error(text, settings)
    if "password authentication failed" in lowered or re.search(r'database "[^"]+" does not exist', text):
        return connection.connection_error(text, settings)
    if "ssl support is not compiled in" in lowered:
        return errors.ConfigurationError(
            f"{tool} was built without SSL support but the connection needs TLS: {_error_line(text)} "
            "(point --pg-bin-dir at client tools built with OpenSSL)"
        )
    if "server version mismatch" in lowered or "aborting because of server version mismatch" in lowered:
        return errors.ConfigurationError(f"{tool}: {_error_line(text)}")
    if "permission denied" in lowered:
        return errors.AuthenticationError(f"{tool}: {_error_line(text)}")
    if re.search(r"no matching (tables|schemas|extensions|foreign servers) were found", lowered):
        named = [arg.replace("=", " ", 1) for arg in command if arg.startswith(("--table=", "--schema="))]
        return errors.InvalidSpecError(f"{tool}: {_error_line(text)} for {', '.join(named) or 'the scope'}",
                                       reason="NoMatchingObjects")
    if "no space left on device" in lowered:
        return errors.PermanentError(f"{tool}: disk full: {_error_line(text)}", reason="DiskFull")
    if connection_lost(text):
        return errors.TransientError(f"{tool} lost its connection to {settings.describe()}: {_error_line(text)}")
    return errors.TransientError(f"{tool} failed: {_error_line(text)}")


def _error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line.lower() or "fatal:" in line.lower():
            return line[:500]
    return (lines[-1] if lines else "no error output")[:500]
