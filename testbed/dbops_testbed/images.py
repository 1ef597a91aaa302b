"""Image resolution: what a container runs on this node, given its image, command and args."""

from __future__ import annotations

import shutil

from dbops_testbed.environment import expand
from dbops_testbed.objects import JSON


def container_argv(spec: JSON, env: dict[str, str]) -> list[str]:
    """The container's `command + args` with `$(VAR)` expanded as the kubelet does."""
    return [expand(item, env) for item in [*(spec.get("command") or []), *(spec.get("args") or [])]]


def start_error(argv: list[str], env: dict[str, str]) -> str | None:
    """Why `argv` cannot start (the runtime's StartError message), or None if it can."""
    if not argv:
        return "the process executor cannot run image entrypoints: the container needs a command"
    if "/" not in argv[0] and shutil.which(argv[0], path=env.get("PATH", "")) is None:
        return f'exec: "{argv[0]}": executable file not found in $PATH'
    return None
