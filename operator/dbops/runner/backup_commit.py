"""The commit protocol of a backup: sealed dump objects made visible under the commit lease, then the manifest.

A backup exists only once its manifest exists; the manifest is written last, exclusively. Dump objects are
uploaded *sealed* — S3 multipart uploads not yet completed, hidden ``.partial-`` files on directory storage —
so a runner killed while uploading (SIGKILL, OOM, node loss) leaves nothing at a final key: only incomplete
uploads, which the next run of the same backup (``--abort-incomplete-after``) or a bucket lifecycle rule
aborts. The objects are committed only in the commit phase, right before the manifest and under the lease.
A run killed inside that short phase leaves dump objects no manifest names; the next run removes them under
the lease before it commits (``remove_uncommitted``). This is the rule pgBackRest, Barman and Velero follow
too: the metadata file written last is the only commit point, and anything it does not name is
garbage of an interrupted run.
"""

from __future__ import annotations

import sys

from dbops import errors
from dbops.runner import lease, storage
from dbops.runner.manifest import MANIFEST_KEY, BackupManifest, StoredObject


def is_dump_object(key: str) -> bool:
    """Whether a key under a backup folder is a committed dump object (``dump.zst``…, ``dump``, ``dump/…``; not
    a hidden partial file, the lease or the manifest)."""
    return (key == "dump" or key.startswith(("dump.", "dump/"))) and not key.rsplit("/", 1)[-1].startswith(".")


def commit_manifest(store: storage.Storage, manifest: BackupManifest, objects: list[StoredObject],
                     versions: dict[str, str | None]) -> None:
    """Write the manifest exclusively; withdraw it if a dump object was replaced meanwhile."""
    folder = store.location
    try:
        store.put_bytes(MANIFEST_KEY, manifest.to_json(), exclusive=True)
    except errors.DbopsError as error:
        if error.reason == "AlreadyExists":
            raise errors.PermanentError(
                f"backup {folder.uri()} was committed by another run meanwhile", reason="AlreadyExists"
            ) from None
        raise
    # Only a run that took over our lease as stale can have replaced a dump object: withdraw our manifest.
    replaced = [item.name for item in objects if store.version(item.name) != versions.get(item.name)]
    if replaced:
        store.delete([MANIFEST_KEY])
        raise errors.TransientError(
            f"backup {folder.uri()}: {', '.join(replaced)} was replaced while committing (another run of the "
            "same backup?); retry", reason="ConcurrentRun",
        )


class Commits:
    """Commits a run's dump objects under the folder's commit lease, taken before the first one."""

    def __init__(self, store: storage.Storage, lease_ttl: float, lease_wait: float, legacy_after: float) -> None:
        self.store = store
        self._lease_ttl, self._lease_wait, self._legacy_after = lease_ttl, lease_wait, legacy_after
        self.versions: dict[str, str | None] = {}
        self.lease: lease.Lease | None = None
        self.took_over: lease.Holder | None = None
        self.sealed: list[tuple[storage.ObjectWriter, str]] = []

    def begin(self) -> None:
        """Take the folder's commit lease (once; before the first object of a directory dump is uploaded)."""
        if self.lease is None:
            # A lease of a runner that never renews it keeps the old bound (--abort-incomplete-after).
            self.lease = lease.acquire(self.store, self._lease_ttl, self._lease_wait, legacy_after=self._legacy_after)
            self.took_over = self.lease.took_over

    def seal(self, writer: storage.ObjectWriter, name: str) -> None:
        """Seal an uploaded object (still invisible) to be committed by :meth:`commit_all`."""
        self.sealed.append((writer, name))
        writer.seal()

    def commit_all(self) -> None:
        """Make the run's sealed dump objects visible at their final keys, right before the manifest.

        Under the lease and only while no manifest exists. Dump objects at final keys that no manifest names
        are what a run killed between these commits and its manifest left: removed first. A failure midway
        withdraws the objects this run committed."""
        self.begin()
        self.check()
        if self.store.exists(MANIFEST_KEY):  # checked under the lease: no run commits between check and write
            raise errors.PermanentError(
                f"backup {self.store.location.uri()} was committed by another run meanwhile", reason="AlreadyExists")
        self._remove_uncommitted({name for _, name in self.sealed})
        try:
            for writer, name in self.sealed:
                self.check()
                writer.commit()
                self.versions[name] = self.store.version(name)
        except BaseException:
            self.delete(list(self.versions))
            raise

    def abort_sealed(self) -> None:
        """Abort the uploads not committed (on failure; a no-op for committed objects)."""
        for writer, _ in self.sealed:
            writer.abort()

    def _remove_uncommitted(self, ours: set[str]) -> None:
        leftovers = [key for key in self.store.list_keys() if is_dump_object(key) and key not in ours]
        if leftovers:
            self.store.delete(leftovers)
            print(f"removed {len(leftovers)} dump objects an earlier run left without a manifest "
                  f"(killed while committing): {', '.join(leftovers[:5])}{' …' if len(leftovers) > 5 else ''}",
                  file=sys.stderr)

    def delete(self, names: list[str]) -> None:
        """Withdraw this run's committed dump objects, only while it holds the lease: once another run
        took it over, the objects at these names may be that run's."""
        if self.lease is None:
            self.store.delete(names)
            return
        try:
            holds = self.lease.holds()
        except errors.DbopsError:
            holds = False  # the store does not answer: deleting would fail too
        if holds:
            self.store.delete(names)
        else:
            print(f"left {len(names)} dump objects in place: they may be another run's by now "
                  f"({self.lease.lost or 'the lease could not be renewed'})", file=sys.stderr)

    def check(self) -> None:
        """Fail ConcurrentRun unless this run still holds the lease (before each commit)."""
        if self.lease is not None:
            self.lease.check()

    def stop_if_lost(self) -> None:
        """Fail ConcurrentRun once the renewal found the lease taken over (no request: between uploads)."""
        if self.lease is not None and self.lease.lost is not None:
            self.lease.check()

    def release(self) -> None:
        """Give the lease back (after the manifest, or on failure)."""
        if self.lease is not None:
            held, self.lease = self.lease, None
            try:
                held.release()
            except errors.DbopsError as error:  # never hides the run's own outcome; taken over once stale
                print(f"could not release the commit lease: {error}", file=sys.stderr)
