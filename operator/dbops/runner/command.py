"""Running one runner command under the result protocol: summary, JSON result, exit code, redaction."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from dbops import errors
from dbops.redaction import redact
from dbops.runner import result

SECRET_ENV = ("PGPASSWORD", "DBOPS_DATABASE_URI", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

Work = Callable[[], tuple[dict[str, Any], str]]


def secrets() -> list[str]:
    """Secret values present in the environment (masked wherever they might appear)."""
    return [value for name in SECRET_ENV if (value := os.environ.get(name))]


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise errors.TransientError(f"interrupted by signal {signal.Signals(signum).name}", reason="Interrupted")


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(command: str, work: Work, result_path: str | None = None) -> int:
    """Run ``work`` (returning the result document and a summary line) and report it; returns the exit code.

    A DbopsError becomes a failure result with its documented exit code; any other exception is an
    internal error whose (redacted) traceback goes to stderr.
    """
    path = Path(result_path) if result_path else None
    hidden = secrets()
    try:
        with _signals_raise():
            document, summary = work()
    except KeyboardInterrupt:
        error: BaseException = errors.TransientError("interrupted", reason="Interrupted")
        document, summary = _failure(command, error, hidden)
    except errors.DbopsError as caught:
        document, summary = _failure(command, caught, hidden)
    except Exception as caught:
        print(redact("".join(traceback.format_exception(caught)), *hidden), file=sys.stderr)
        document, summary = _failure(command, caught, hidden)
    document["message"] = redact(str(document.get("message", "")), *hidden)
    return result.emit(document, redact(summary, *hidden), path)


def _failure(command: str, error: BaseException, hidden: list[str]) -> tuple[dict[str, Any], str]:
    document = result.failure(command, error)
    message = redact(str(document["message"]), *hidden)
    return document, f"dbops {command} failed: {message}"
