"""Container logs as a CRI runtime keeps them: one file per container start, a timestamped line per entry."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

# A runtime splits a line longer than this into partial ("P") entries, as containerd does (16 KiB).
MAX_ENTRY_BYTES = 16 * 1024
DRAIN_TIMEOUT = 5.0
_ENTRY = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) (.*)$", re.DOTALL)


def log_dir(pod_dir: Path, container: str) -> Path:
    """The directory holding one container's log files, one per start (`<restart count>.log`)."""
    return pod_dir / "logs" / container


def attempts(pod_dir: Path, container: str) -> list[Path]:
    """The container's log files, oldest start first."""
    directory = log_dir(pod_dir, container)
    if not directory.is_dir():
        return []
    return sorted((path for path in directory.glob("*.log") if path.stem.isdigit()), key=lambda path: int(path.stem))


def _timestamp() -> bytes:
    """RFC 3339 with nanoseconds, as the CRI log format writes it."""
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z").encode()


class ContainerLog:
    """The log of one container start: a pipe the process writes to, and a thread copying it to the file.

    Standard output and error share the pipe (one stream, so their order is kept as the process wrote them);
    entries are tagged `stdout`. Each line becomes `<RFC 3339 time> stdout F <line>`; a line longer than
    `MAX_ENTRY_BYTES` is cut into `P` (partial) entries and ends with an `F` entry, as containerd writes them.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - closed by the pump thread when the pipe ends
        read_end, self.write_end = os.pipe()
        self._write_end_open = True
        self._close_lock = threading.Lock()
        self._reader = os.fdopen(read_end, "rb", buffering=0)
        self._pump = threading.Thread(target=self._copy, name=f"log-{path.parent.name}-{path.stem}", daemon=True)
        self._pump.start()

    def close_write_end(self) -> None:
        """Close the executor's copy of the write end once the process holds its own (once: the number may
        be reused by another descriptor afterwards)."""
        with self._close_lock:
            if self._write_end_open:
                self._write_end_open = False
                with contextlib.suppress(OSError):
                    os.close(self.write_end)

    def _copy(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self._reader.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._write(line, final=True)
                while len(pending) >= MAX_ENTRY_BYTES:
                    self._write(pending[:MAX_ENTRY_BYTES], final=False)
                    pending = pending[MAX_ENTRY_BYTES:]
            if pending:
                self._write(pending, final=True)
        finally:
            self._reader.close()
            self._file.close()

    def _write(self, content: bytes, *, final: bool) -> None:
        self._file.write(_timestamp() + b" stdout " + (b"F " if final else b"P ") + content + b"\n")
        self._file.flush()

    def finish(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait until everything the process wrote is in the file (its pipe ended), at most `timeout` seconds."""
        self.close_write_end()
        self._pump.join(timeout)

    @property
    def finished(self) -> bool:
        """Whether the pipe ended and the file is complete."""
        return not self._pump.is_alive()


@dataclass(frozen=True)
class Entry:
    """One line of a container's log."""

    timestamp: bytes
    content: bytes
    partial: bool


def entries(path: Path) -> list[Entry]:
    """The entries of a CRI log file, partial ones joined to their line (a torn last line is kept as is)."""
    result: list[Entry] = []
    carry: list[bytes] = []
    data = path.read_bytes() if path.exists() else b""
    for raw in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        match = _ENTRY.match(raw)
        if match is None:
            continue
        timestamp, _stream, tag, content = match.groups()
        if tag == b"P":
            carry.append(content)
            continue
        result.append(Entry(timestamp, b"".join(carry) + content, partial=False))
        carry = []
    if carry:
        result.append(Entry(b"", b"".join(carry), partial=True))
    return result


def render(path: Path, *, timestamps: bool = False, tail_lines: int | None = None, limit_bytes: int | None = None,
           since: datetime.datetime | None = None) -> bytes:
    """What the kubelet returns for a log file: lines (with their time when `timestamps`), the last
    `tail_lines` of them, those at or after `since`, cut after `limit_bytes` bytes (a line may be cut)."""
    lines = entries(path)
    if since is not None:
        lines = [entry for entry in lines if not entry.timestamp or _parse_time(entry.timestamp) >= since]
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    out = b"".join((entry.timestamp + b" " if timestamps and entry.timestamp else b"") + entry.content
                   + (b"" if entry.partial else b"\n") for entry in lines)
    return out[:limit_bytes] if limit_bytes is not None else out


def _parse_time(value: bytes) -> datetime.datetime:
    text = value.decode()
    # Python parses microseconds: drop the nanosecond digits beyond them.
    text = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text)


def parse_time(value: str) -> datetime.datetime:
    """An RFC 3339 time from a query parameter (`sinceTime`)."""
    return _parse_time(value.encode())
