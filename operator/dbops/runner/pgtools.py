"""Locating pg_dump, pg_restore and psql whose major version can handle the server."""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from dbops import errors

BIN_DIR_ENV = "DBOPS_PG_BIN_DIR"


@dataclasses.dataclass(frozen=True)
class PgTools:
    """One directory's PostgreSQL client tools and their version."""

    bin_dir: Path
    version: str
    major: int

    def path(self, tool: str) -> str:
        """Absolute path of a tool in this set (pg_dump, pg_restore, psql)."""
        return str(self.bin_dir / tool)


@functools.cache
def tool_version(pg_dump: str) -> tuple[str, int]:
    """(full version, major) reported by ``pg_dump --version``."""
    output = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", output)
    if not match:
        raise errors.ConfigurationError(f"cannot tell the version of {pg_dump}: {output.strip()!r}")
    return match[0], int(match[1])


def major_of(version: str) -> int:
    """The major number of a version string such as ``18.1`` (0 when there is none)."""
    match = re.match(r"\s*(\d+)", version)
    return int(match[1]) if match else 0


def _candidate_dirs(explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(part) for part in explicit.split(os.pathsep) if part]
    candidates: list[Path] = []
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)]
    return candidates


def find_tools(server_major: int, bin_dir: str | None = None) -> PgTools:
    """The client tools of the lowest major that is at least ``server_major``.

    Looks in ``--pg-bin-dir`` / ``$DBOPS_PG_BIN_DIR`` (one or more directories separated by ``:``) when
    given, otherwise on PATH and in the usual install locations. The closest major keeps archives
    restorable by the same major and scripts free of settings older servers do not know.
    """
    explicit = bin_dir or os.environ.get(BIN_DIR_ENV) or None
    found: list[PgTools] = []
    for directory in _candidate_dirs(explicit):
        pg_dump = directory / "pg_dump"
        if not pg_dump.exists():
            continue
        version, major = tool_version(str(pg_dump))
        found.append(PgTools(bin_dir=directory, version=version, major=major))
    if explicit and not found:
        raise errors.ConfigurationError(f"no pg_dump in {explicit} (from --pg-bin-dir or ${BIN_DIR_ENV})")
    usable = [tools for tools in found if tools.major >= server_major]
    if not usable:
        seen = ", ".join(f"{t.bin_dir} ({t.version})" for t in found) or "none"
        raise errors.ConfigurationError(
            f"no pg_dump of major version {server_major} or newer found (seen: {seen}); "
            f"install a newer PostgreSQL client or point --pg-bin-dir / ${BIN_DIR_ENV} at one"
        )
    return min(usable, key=lambda tools: tools.major)
