"""Reading a stored backup: its manifest, checksum-verified streams and verified local copies."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dbops import errors
from dbops.runner import compression, progress, storage, storage_local, storage_s3
from dbops.runner.manifest import MANIFEST_KEY, BackupManifest, StoredObject, parse_manifest


def load_manifest(store: storage.Storage) -> BackupManifest:
    """The manifest of the backup folder ``store`` points at; NotFoundError when there is none."""
    try:
        data = store.get_bytes(MANIFEST_KEY)
    except errors.NotFoundError:
        if isinstance(store, storage_s3.S3Storage):
            store.check_bucket()  # a missing bucket is named as such, not as a missing manifest
        raise errors.NotFoundError(
            f"no backup at {store.location.uri()}: {MANIFEST_KEY} is missing (a backup without a manifest "
            "is incomplete)"
        ) from None
    manifest = parse_manifest(data, store.location.uri(MANIFEST_KEY))
    if not manifest.objects:
        raise errors.VerificationError(f"{store.location.uri(MANIFEST_KEY)} lists no objects")
    return manifest


def stream_verified(
    store: storage.Storage, item: StoredObject, codec: str, sink: Callable[[bytes], object] | None, label: str
) -> None:
    """Read one object, pass its decompressed bytes to ``sink`` and check its size and sha256 at the end.

    Raises VerificationError on a size or checksum mismatch or a truncated/corrupt compressed stream.
    """
    digest = hashlib.sha256()
    size = 0
    decompressor = compression.decompressor(codec) if sink is not None else None
    meter = progress.Progress(f"{label} {store.location.uri(item.name)}", total=item.size_bytes)
    corrupt: errors.VerificationError | None = None
    for chunk in store.read(item.name):
        digest.update(chunk)
        size += len(chunk)
        meter.add(len(chunk))
        if decompressor is not None and sink is not None and corrupt is None:
            try:
                sink(decompressor.decompress(chunk))
            except errors.VerificationError as error:
                corrupt = error  # read on: the checksum names what is wrong better than the codec can
    meter.finish()
    uri = store.location.uri(item.name)
    check_digest(item, size, digest.hexdigest(), uri)
    try:
        if corrupt is not None:
            raise corrupt
        if decompressor is not None:
            decompressor.finish()
    except errors.VerificationError as error:
        raise errors.VerificationError(f"{uri} (sha256 {item.sha256[:16]}… matches the manifest): {error}",
                                       reason=error.reason) from None


def check_digest(item: StoredObject, size: int, sha256: str, uri: str) -> None:
    """VerificationError unless size and sha256 match the manifest."""
    if size != item.size_bytes:
        raise errors.VerificationError(
            f"{uri} is {size} bytes but the manifest says {item.size_bytes}: the object is truncated or altered",
            reason="ChecksumMismatch",
        )
    if sha256 != item.sha256:
        raise errors.VerificationError(
            f"{uri} has sha256 {sha256[:16]}… but the manifest says {item.sha256[:16]}…: the object is corrupt",
            reason="ChecksumMismatch",
        )


def verify_checksums(store: storage.Storage, manifest: BackupManifest) -> None:
    """Re-read every object and compare size and sha256 with the manifest (nothing decoded)."""
    for item in manifest.objects:
        stream_verified(store, item, manifest.codec, None, "checksum")


def feed_process(process: subprocess.Popen[bytes]) -> Callable[[bytes], None]:
    """A sink that writes into a process's stdin and stops quietly once the process has stopped reading."""
    assert process.stdin is not None
    stdin = process.stdin
    broken = False

    def sink(data: bytes) -> None:
        nonlocal broken
        if broken or not data:
            return
        try:
            stdin.write(data)
        except (BrokenPipeError, ValueError):
            broken = True

    return sink


def close_stdin(process: subprocess.Popen[bytes]) -> None:
    """Close a process's stdin, ignoring a process that already exited."""
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            process.stdin.close()


@contextlib.contextmanager
def local_copy(store: storage.Storage, manifest: BackupManifest) -> Iterator[Path]:
    """Decompressed, checksum-verified local copy of the dump (a file, or a folder for directory format)."""
    root = Path(tempfile.mkdtemp(prefix="dbops-restore-"))
    try:
        suffix = compression.SUFFIXES[manifest.codec]
        if manifest.format == "directory":
            target = root / "dump"
            target.mkdir()
            for item in manifest.objects:
                filename = item.name.removeprefix("dump/")
                filename = filename[: len(filename) - len(suffix)] if suffix else filename
                _download(store, item, manifest.codec, target / filename)
        else:
            target = root / "dump"
            _download(store, manifest.objects[0], manifest.codec, target)
        yield target
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _download(store: storage.Storage, item: StoredObject, codec: str, path: Path) -> None:
    try:
        with open(path, "wb") as handle:
            stream_verified(store, item, codec, handle.write, "download")
    except OSError as error:
        raise storage_local.disk_error(error, path) from None
