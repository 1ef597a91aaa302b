"""The runner's result protocol: exit codes and the JSON result (at most 4 KiB).

Every runner command ends by printing a one-line human summary on stderr, writing
a JSON object to the result path and exiting with one of the codes below. In a Job
the result path is ``/dev/termination-log``, which the operator reads from the
pod's ``status.containerStatuses[].state.terminated.message``.

Exit codes:
    0  SUCCESS               the work was done (and verified, where asked)
    1  VERIFICATION_FAILED   the work ran but an artifact or database failed a check
    2  USER_ERROR            bad arguments, missing database/bucket, bad credentials, unsafe request
    3  TRANSIENT_ERROR       may succeed when retried (network, lock held, server starting)
    4  INTERNAL_ERROR        a bug in dbops

The JSON object always has ``command``, ``ok``, ``exitCode``, ``reason`` and
``message``; commands add their own fields. Lists are shortened (with a
``truncated`` marker) until the document fits in ``MAX_RESULT_BYTES``.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbops import errors
from dbops.redaction import redact

MAX_RESULT_BYTES = 4096
_MORE = re.compile(r"^\.\.\. (\d+) more$")
TERMINATION_LOG = Path("/dev/termination-log")


class ExitCode(enum.IntEnum):
    """Documented exit codes of every runner command."""

    SUCCESS = 0
    VERIFICATION_FAILED = 1
    USER_ERROR = 2
    TRANSIENT_ERROR = 3
    INTERNAL_ERROR = 4


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code a runner command uses for an exception."""
    if isinstance(error, errors.VerificationError):
        return ExitCode.VERIFICATION_FAILED
    if isinstance(error, errors.TransientError):
        return ExitCode.TRANSIENT_ERROR
    if isinstance(error, errors.PermanentError):
        return ExitCode.USER_ERROR
    return ExitCode.INTERNAL_ERROR


def default_result_path() -> Path | None:
    """``/dev/termination-log`` when it exists (inside a pod), otherwise nowhere."""
    override = os.environ.get("DBOPS_RESULT_PATH")
    if override:
        return Path(override)
    return TERMINATION_LOG if TERMINATION_LOG.exists() else None


def success(command: str, message: str, **fields: Any) -> dict[str, Any]:
    """A successful result document."""
    return {"command": command, "ok": True, "exitCode": 0, "reason": "Succeeded", "message": message, **fields}


def failure(command: str, error: BaseException, **fields: Any) -> dict[str, Any]:
    """A failed result document for an exception (message redacted)."""
    reason = error.reason if isinstance(error, errors.DbopsError) else "InternalError"
    message = redact(str(error)) or type(error).__name__
    return {
        "command": command,
        "ok": False,
        "exitCode": int(exit_code_for(error)),
        "reason": reason,
        "message": message,
        **fields,
    }


def encode_result(result: Mapping[str, Any], limit: int = MAX_RESULT_BYTES) -> bytes:
    """Serialize a result to compact JSON of at most ``limit`` bytes, shortening lists and strings."""
    document: dict[str, Any] = json.loads(json.dumps(result, default=str))
    data = _dumps(document)
    while len(data) > limit:
        if not _shrink_largest(document):
            document = {k: document.get(k) for k in ("command", "ok", "exitCode", "reason")}
            document["message"] = "result too large; truncated"
            document["truncated"] = True
            data = _dumps(document)
            break
        document["truncated"] = True
        data = _dumps(document)
    return data


def fits(result: Mapping[str, Any], limit: int = MAX_RESULT_BYTES) -> bool:
    """Whether ``encode_result`` keeps the result whole (nothing to shorten)."""
    return len(json.dumps(result, separators=(",", ":"), default=str).encode()) <= limit


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=False).encode()


def _shrink_largest(node: Any) -> bool:
    """Halve the largest list or string found anywhere in the document; False when nothing can shrink."""
    best: tuple[int, Any, Any] | None = None

    def visit(parent: Any, key: Any, value: Any) -> None:
        nonlocal best
        if (isinstance(value, list) and len(value) > 1) or (isinstance(value, str) and len(value) > 64):
            size = len(json.dumps(value))
            if best is None or size > best[0]:
                best = (size, parent, key)
        if isinstance(value, dict):
            for k, v in value.items():
                visit(value, k, v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                visit(value, i, v)

    visit(None, None, node)
    if best is None:
        return False
    _, parent, key = best
    value = parent[key]
    if isinstance(value, list):
        # A list shortened before ends in its "... N more" marker: count the N items it already hides.
        hidden = 0
        if isinstance(value[-1], str) and (marker := _MORE.match(value[-1])):
            value, hidden = value[:-1], int(marker[1])
        keep = len(value) // 2
        parent[key] = [*value[:keep], f"... {len(value) - keep + hidden} more"]
    else:
        parent[key] = value[: len(value) // 2] + "..."
    return True


def emit(result: Mapping[str, Any], summary: str, path: Path | None = None) -> int:
    """Print the human summary, write the JSON result and return the exit code to use."""
    print(redact(summary), file=sys.stderr, flush=True)
    data = encode_result(result)
    target = path if path is not None else default_result_path()
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True) if target != TERMINATION_LOG else None
        target.write_bytes(data)
    return int(result.get("exitCode", 0))
