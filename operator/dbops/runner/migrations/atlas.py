"""Atlas migration directories: ``<version>[_<name>].sql`` files checked against ``atlas.sum`` as Atlas does.

Atlas (ariga/atlas ``sql/migrate/dir.go``: ``NewHashFile``, ``HashFile.Sum``) hashes the directory's
``*.sql`` files in lexicographic order with one running sha256: for each file it adds the name, then the
bytes (unless the file's first line is an ``atlas:sum ignore`` directive), and records the running digest
(base64) as that file's ``h1:`` hash — so a file's hash covers every file before it. The first line of
``atlas.sum`` is ``h1:`` + base64 sha256 over every recorded name and hash, which catches a hand-edited sum
file. A tampered, added or removed file is refused naming the file.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from dbops import errors
from dbops.api import versions

SUM_FILE = "atlas.sum"
_DIRECTIVE = re.compile(r"([ -~]*)atlas:(\w+)(?: +([ -~]*))*")  # Atlas's reDirective, anchored at the start


@dataclass(frozen=True)
class AtlasFile:
    """One migration file of an Atlas directory."""

    file: str
    version: str
    name: str
    text: str


def file_hashes(files: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """(name, ``h1`` hash) per file, as ``atlas migrate hash`` writes them (``files`` sorted by name)."""
    running = hashlib.sha256()
    hashes = []
    for name, data in files:
        running.update(name.encode())
        directive = _DIRECTIVE.match(data.decode("utf-8", errors="replace"))
        if directive and directive[2] == "sum" and directive[3] == "ignore":
            continue
        running.update(data)
        hashes.append((name, base64.b64encode(running.copy().digest()).decode()))
    return hashes


def directory_sum(hashes: list[tuple[str, str]]) -> str:
    """The sum on the first line of ``atlas.sum``: sha256 over every name and hash."""
    digest = hashlib.sha256()
    for name, value in hashes:
        digest.update(name.encode())
        digest.update(value.encode())
    return base64.b64encode(digest.digest()).decode()


def parse_sum_file(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(directory sum, [(name, hash)]) of an ``atlas.sum``; InvalidSpecError when it is not one."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("h1:"):
        raise errors.InvalidSpecError(f"{SUM_FILE}: the first line is not 'h1:<sum>'; is it an Atlas sum file?")
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        name, separator, value = line.partition("h1:")
        if not separator:
            raise errors.InvalidSpecError(f"{SUM_FILE} line {number}: expected '<file> h1:<hash>', got {line[:80]!r}")
        entries.append((name.strip(), value))
    return lines[0].removeprefix("h1:"), entries


def verify(files: list[tuple[str, bytes]], sum_text: str) -> None:
    """Refuse when the files are not the ones ``atlas.sum`` records, naming the first file at fault."""
    recorded_sum, recorded = parse_sum_file(sum_text)
    if directory_sum(recorded) != recorded_sum:
        raise errors.InvalidSpecError(
            f"{SUM_FILE} was edited by hand: its first line does not match the hashes it lists; "
            "run `atlas migrate hash` on a reviewed directory")
    actual = file_hashes(files)
    recorded_names = {name for name, _ in recorded}
    actual_names = {name for name, _ in actual}
    for name, value in actual:
        if name not in recorded_names:
            raise errors.InvalidSpecError(
                f"migration file {name} is not in {SUM_FILE} (added after `atlas migrate hash`?); "
                "run `atlas migrate hash` and commit the sum file with it")
        if dict(recorded)[name] != value:
            raise errors.InvalidSpecError(
                f"migration file {name} does not match its hash in {SUM_FILE}: it (or a file before it) was "
                "changed after `atlas migrate hash`; restore the reviewed text, or re-hash the directory")
    missing = sorted(recorded_names - actual_names)
    if missing:
        raise errors.InvalidSpecError(f"{SUM_FILE} lists {', '.join(missing[:5])} but the directory has no such "
                                      "file; restore it, or re-hash the directory")


def read_directory(path: Path) -> list[AtlasFile]:
    """The ``*.sql`` files of an Atlas directory, verified against its ``atlas.sum``, by name."""
    entries = sorted(entry for entry in path.iterdir() if entry.name.endswith(".sql") and entry.is_file())
    files = [(entry.name, entry.read_bytes()) for entry in entries]
    verify(files, (path / SUM_FILE).read_text(encoding="utf-8"))
    found = []
    for name, data in files:
        version, _, description = name.removesuffix(".sql").partition("_")
        if not versions.is_version(version):
            raise errors.InvalidSpecError(
                f"migration file {name!r}: Atlas version {version!r} is not digits (e.g. 20240101120000_init.sql)")
        found.append(AtlasFile(file=name, version=version, name=description or "migration",
                               text=data.decode("utf-8")))
    return found
