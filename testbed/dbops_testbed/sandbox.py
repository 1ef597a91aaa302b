"""The process sandbox: each container runs in its own mount namespace, and dies with what it started."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dbops_testbed.controlplane import die_with_parent
from dbops_testbed.environment import SYSTEM_PATH
from dbops_testbed.objects import JSON
from dbops_testbed.security import Identity
from dbops_testbed.volumes import Mount

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# What the "image" holds: the interpreter, the virtualenv and the project's source tree. A pod volume
# mounted over one of their parents (an emptyDir on /tmp while the checkout lives under /tmp) must not
# hide them, so they are bound back on top of such volumes.
IMAGE_PATHS = tuple(dict.fromkeys(
    Path(path).resolve() for path in (sys.prefix, sys.base_prefix, Path(__file__).resolve().parents[2])
))


class HostMountPoints:
    """Mount points the executor had to create on the host; they are kept.

    A mount namespace cannot bind-mount onto a path that does not exist, and creating it inside
    the namespace still creates it on the shared filesystem. So missing mount points (outside the
    private /dev) are created here, and kept: several executors (parallel test workers, other
    sessions) share the host filesystem, and one of them removing `/migrations` when its last pod
    ended made another's pod fail with "migration source directory /migrations does not exist".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def create(self, path: Path, *, is_file: bool) -> None:
        """Create the missing components of `path` (an empty file last when `is_file`)."""
        with self._lock:
            current = Path("/")
            parts = path.parts[1:]
            for index, part in enumerate(parts):
                current = current / part
                if current.exists() or current.is_symlink():
                    continue
                if index == len(parts) - 1 and is_file:
                    current.touch()
                else:
                    current.mkdir()


def on_private_dev(path: str) -> bool:
    """Whether `path` lies in the container's private /dev (no host mount point needed)."""
    return path == "/dev" or path.startswith("/dev/")


def unreachable_ancestors(paths: tuple[Path, ...]) -> list[Path]:
    """The topmost directories above `paths` that other users cannot traverse (say /root, mode 0700)."""
    blocked: list[Path] = []
    for path in paths:
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not ancestor.stat().st_mode & 0o001:
                if ancestor not in blocked:
                    blocked.append(ancestor)
                break
    return blocked


def setup_script(*, stage: Path, mounts: list[Mount], spec: JSON, message_file: Path,
                 need_mount_point: Callable[[str, bool], None], working_dir: str = "/",
                 identity: Identity | None = None, read_only_root: bool = False) -> str:
    """A /bin/sh script that builds the container's mount namespace, then execs its command.

    `stage`: an empty host directory for the private /dev. `need_mount_point(path, is_file)` is called
    for every path outside /dev the namespace mounts on, so it exists on the host. `identity`: the
    user the command runs as (the mounts are made as root first). For a non-root user, a host
    directory it cannot traverse above the "image" (the interpreter under /root, mode 0700) is
    replaced by an empty tmpfs holding only the image's paths: the host's home stays hidden.
    `read_only_root` (readOnlyRootFilesystem): every mount but /dev, /proc, /sys, the writable
    volumes and the termination-message file is made read-only in the container's namespace.
    """
    identity = identity or Identity(0, 0)
    stage.mkdir(parents=True, exist_ok=True)
    q = shlex.quote
    lines = [
        "set -eu",
        '_container_path="${PATH:-}"',
        f"PATH={SYSTEM_PATH}",
        f"stage={q(str(stage))}",
        'mount -t tmpfs -o mode=755,nosuid tmpfs "$stage"',
        f"for dev in {' '.join(DEVICES)}; do",
        '  touch "$stage/$dev"; mount --bind "/dev/$dev" "$stage/$dev"',
        "done",
        'ln -s /proc/self/fd "$stage/fd"',
        'ln -s /proc/self/fd/0 "$stage/stdin"; ln -s /proc/self/fd/1 "$stage/stdout"',
        'ln -s /proc/self/fd/2 "$stage/stderr"',
        'mkdir "$stage/shm"; mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$stage/shm"',
        'mkdir "$stage/pts"; mount --bind /dev/pts "$stage/pts"; ln -s pts/ptmx "$stage/ptmx"',
        'mount --move "$stage" /dev',
    ]
    mounts = sorted(mounts, key=lambda mount: len(Path(mount.target).parts))
    message_target = spec.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    for path, is_file in [*((m.target, not m.source.is_dir()) for m in mounts), (message_target, True),
                          (working_dir, False)]:
        if not on_private_dev(path):
            need_mount_point(path, is_file)
    # Sources are first bound inside the private /dev: a later mount (say an emptyDir on /tmp)
    # may hide the host paths they come from.
    sources = [*((mount.source, mount.source.is_dir()) for mount in mounts), (message_file, False)]
    blocked = unreachable_ancestors(IMAGE_PATHS) if identity.uid != 0 else []
    hidden = [path for path in IMAGE_PATHS
              if any(path.is_relative_to(mount.target) for mount in mounts)
              or any(path.is_relative_to(ancestor) for ancestor in blocked)]
    sources += [(path, True) for path in hidden]
    lines.insert(lines.index('mount --move "$stage" /dev'), 'mkdir "$stage/.dbops-sources"')
    for index, (source, is_dir) in enumerate(sources):
        lines.insert(lines.index('mount --move "$stage" /dev'),
                     f'{"mkdir" if is_dir else "touch"} "$stage/.dbops-sources/{index}"; '
                     f'mount --bind {q(str(source))} "$stage/.dbops-sources/{index}"')
    for ancestor in blocked:
        lines.append(f"mount -t tmpfs -o mode=755,nosuid,nodev tmpfs {q(str(ancestor))}")
    for index, mount in enumerate(mounts):
        target = q(mount.target)
        if mount.source.is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            lines.append(f'mkdir -p "$(dirname {target})"; [ -e {target} ] || touch {target}')
        lines.append(f"mount --bind /dev/.dbops-sources/{index} {target}")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    for index, path in enumerate(hidden, start=len(mounts) + 1):
        lines.append(f"mkdir -p {q(str(path))}")
        lines.append(f"mount --bind /dev/.dbops-sources/{index} {q(str(path))}")
    message_path = q(message_target)
    lines += [
        f'mkdir -p "$(dirname {message_path})"; [ -e {message_path} ] || touch {message_path}',
        f"mount --bind /dev/.dbops-sources/{len(mounts)} {message_path}",
        "for source in /dev/.dbops-sources/*; do umount -l \"$source\"; done",
        "rm -rf /dev/.dbops-sources",
        f"mkdir -p {q(working_dir)}",
        f"cd {q(working_dir)}",
        *(_read_only_root([m.target for m in mounts if not m.read_only] + [message_target])
          if read_only_root else []),
        'PATH="$_container_path"; unset _container_path stage dev source',
        f'exec {" ".join(map(q, identity.setpriv()))} "$@"'.replace("exec  ", "exec "),
    ]
    return "\n".join(lines) + "\n"


def _read_only_root(writable: list[str]) -> list[str]:
    """Script lines remounting the container's view of the host read-only (per mount, not on the host)."""
    keep = " ".join(shlex.quote(path.rstrip("/") or "/") for path in writable)
    return [
        "for mp in $(cut -d' ' -f5 /proc/self/mountinfo); do",
        '  case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac',
        '  keep=""',
        f'  for w in {keep}; do case "$mp" in "$w"|"$w"/*) keep=1;; esac; done',
        '  [ -n "$keep" ] || mount -o remount,bind,ro "$mp" 2>/dev/null || true',
        "done",
        "unset mp keep w",
    ]


def spawn(setup: Path, argv: list[str], env: dict[str, str], log: int | IO[bytes]) -> subprocess.Popen[bytes]:
    """Start `argv` in a new mount namespace and session, after the setup script built its mounts.

    `log`: where standard output and error go (a descriptor or file).
    """
    return subprocess.Popen(
        die_with_parent(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", str(setup), *argv]),
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, cwd="/",
    )


def hold_mount_namespace(process: subprocess.Popen[bytes]) -> tuple[str, int] | None:
    """The process's mount namespace once it has left ours, and an open descriptor holding it.

    Holding it matters: a freed namespace's identity (its inode number) is reused by the next
    namespace created, and `kill_leftovers` must not kill another container's processes.
    The caller closes the descriptor once done with the namespace. None before, or if it is gone.
    """
    try:
        descriptor = os.open(f"/proc/{process.pid}/ns/mnt", os.O_RDONLY)
    except OSError:
        return None
    namespace = os.readlink(f"/proc/self/fd/{descriptor}")
    if namespace == os.readlink("/proc/self/ns/mnt"):
        os.close(descriptor)
        return None
    return namespace, descriptor


def kill_leftovers(process: subprocess.Popen[bytes], mount_namespace: str | None) -> None:
    """SIGKILL the process group and every process still in the container's mount namespace."""
    signal_group(process, signal.SIGKILL)
    if mount_namespace is None or mount_namespace == os.readlink("/proc/self/ns/mnt"):
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/mnt") == mount_namespace:
                os.kill(int(entry), signal.SIGKILL)


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send `sig` to the process's group (its session leader is the container's main process)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
