"""The commit protocol on directory storage: sealed objects stay invisible until the commit phase, which removes
dump objects an earlier run committed without a manifest and never touches the lease or partial files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbops import errors
from dbops.runner import backup_commit, storage
from dbops.runner.manifest import MANIFEST_KEY


def _store(tmp_path: Path) -> storage.Storage:
    return storage.open_storage(storage.parse_location(str(tmp_path / "ns" / "db" / "b")))


def _visible(tmp_path: Path) -> list[str]:
    root = tmp_path / "ns" / "db" / "b"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.mark.parametrize(("key", "expected"), [
    ("dump.zst", True), ("dump", True), ("dump/toc.dat.zst", True), ("dump/3001.dat.gz", True),
    ("manifest.json", False), (".dbops-lock", False), ("dump/.toc.dat.zst.partial-1a2b3c4d", False),
    (".dump.zst.partial-1a2b3c4d", False), ("dumpster.txt", False), ("notes/dump.zst", False),
])
def test_dump_objects_are_named_by_key(key: str, expected: bool) -> None:
    assert backup_commit.is_dump_object(key) is expected


def test_sealed_objects_appear_only_in_the_commit_phase_and_leftovers_go_first(tmp_path: Path) -> None:
    store = _store(tmp_path)
    # What a run killed between its commits and its manifest left: a dump object no manifest names.
    store.put_bytes("dump/9999.dat.zst", b"old")
    commits = backup_commit.Commits(store, lease_ttl=30, lease_wait=0, legacy_after=0)
    try:
        commits.begin()
        for name, data in (("dump/toc.dat.zst", b"toc"), ("dump/3001.dat.zst", b"rows")):
            writer = store.writer(name)
            writer.write(data)
            commits.seal(writer, name)
        assert _visible(tmp_path) == ["dump/9999.dat.zst"]  # sealed: still hidden partial files
        commits.commit_all()
        assert _visible(tmp_path) == ["dump/3001.dat.zst", "dump/toc.dat.zst"]
        assert store.exists(backup_commit.lease.LEASE_KEY)  # the lease is not a leftover
        assert set(commits.versions) == {"dump/toc.dat.zst", "dump/3001.dat.zst"}
    finally:
        commits.release()


def test_the_commit_phase_refuses_a_folder_committed_meanwhile_and_aborts_what_it_sealed(tmp_path: Path) -> None:
    store = _store(tmp_path)
    commits = backup_commit.Commits(store, lease_ttl=30, lease_wait=0, legacy_after=0)
    writer = store.writer("dump.zst")
    writer.write(b"data")
    commits.seal(writer, "dump.zst")
    store.put_bytes(MANIFEST_KEY, b"{}")  # another run committed the backup
    try:
        with pytest.raises(errors.DbopsError) as raised:
            commits.commit_all()
        assert raised.value.reason == "AlreadyExists"
        commits.abort_sealed()
    finally:
        commits.release()
    root = tmp_path / "ns" / "db" / "b"
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST_KEY]  # no partial file, no dump, no lease
