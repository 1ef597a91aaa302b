"""Backup storage in a local directory (a laptop folder or a mounted PVC): files renamed into place on commit."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from dbops import errors
from dbops.runner.storage import READ_CHUNK, Location, ObjectWriter, already_exists


def not_a_folder(path: Path) -> errors.DbopsError:
    """The error for a storage path whose folder (or one above it) is a regular file."""
    file = next((p for p in (path, *path.parents) if p.is_file()), path)
    return errors.InvalidSpecError(f"{file} is a file, not a folder: point the storage or --from at a directory",
                                   reason="NotAFolder")


def disk_error(error: OSError, path: Path) -> errors.DbopsError:
    """A clear error for a failed local write (disk full, permissions, other)."""
    if error.errno == errno.ENOSPC:
        return errors.PermanentError(f"disk full while writing {path}", reason="DiskFull")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return errors.AuthenticationError(f"no permission to write {path}: {error.strerror}")
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return not_a_folder(path)
    return errors.TransientError(f"cannot write {path}: {error.strerror}")


class _LocalWriter:
    def __init__(self, path: Path, exclusive: bool) -> None:
        self._path = path
        self._exclusive = exclusive
        self._temp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self._temp, "wb")  # noqa: SIM115
        except OSError as error:
            raise disk_error(error, path) from None
        self._size = 0
        self._sealed = False

    def write(self, data: bytes) -> None:
        try:
            self._handle.write(data)
        except OSError as error:
            self.abort()
            raise disk_error(error, self._path) from None
        self._size += len(data)

    def seal(self) -> None:
        if self._sealed:
            return
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        except OSError as error:
            self.abort()
            raise disk_error(error, self._path) from None
        self._sealed = True

    def commit(self) -> int:
        self.seal()
        try:
            if self._exclusive:
                os.link(self._temp, self._path)  # fails when the name exists: no overwrite
                self._temp.unlink()
            else:
                os.replace(self._temp, self._path)
        except FileExistsError:
            self.abort()
            raise already_exists(self._path.as_uri()) from None
        except OSError as error:
            self.abort()
            raise disk_error(error, self._path) from None
        return self._size

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class LocalStorage:
    """Objects as files under a directory (a laptop folder or a mounted PVC)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._root = Path(location.path)

    def writer(self, key: str, expected_size: int = 0, *, exclusive: bool = False) -> ObjectWriter:
        """A writer to a temporary file renamed (or, exclusive, hard-linked) into place on commit."""
        return _LocalWriter(self._root / key, exclusive)

    def read(self, key: str) -> Iterator[bytes]:
        """The file's bytes in chunks."""
        path = self._root / key
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise errors.NotFoundError(f"{path.as_uri()} does not exist") from None
        except NotADirectoryError:
            raise not_a_folder(path) from None
        with handle:
            while chunk := handle.read(READ_CHUNK):
                yield chunk

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False, if_version: str | None = None) -> str:
        """Write a file atomically (if_version: only over the file of that version); its version."""
        path = self._root / key
        temp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            stat = temp.stat()  # a link or rename keeps inode and mtime: the version of what lands at the key
            if if_version is not None:
                # Written first: the key is missing only between these two calls (an exclusive create
                # landing there wins, and this write fails AlreadyExists: never two winners).
                self._take_away(key, if_version)
                exclusive = True
            if exclusive:
                os.link(temp, path)  # fails when the name exists: no overwrite
                temp.unlink()
            else:
                os.replace(temp, path)
        except FileExistsError:
            temp.unlink(missing_ok=True)
            raise already_exists(path.as_uri()) from None
        except OSError as error:
            temp.unlink(missing_ok=True)
            raise disk_error(error, path) from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return f"{stat.st_ino}-{stat.st_mtime_ns}"

    def delete_if(self, key: str, version: str) -> None:
        """Delete the file only while it is of ``version`` (renamed aside and compared: atomic)."""
        if self.version(key) != version:
            return
        try:
            self._take_away(key, version)
        except errors.DbopsError as error:
            if error.reason != "AlreadyExists":
                raise
            return
        self.delete([])  # the folders left empty

    def _take_away(self, key: str, version: str) -> None:
        """Remove the file if it is still of ``version`` (renamed aside first: only one caller gets it)."""
        path = self._root / key
        aside = path.with_name(f".{path.name}.replaced-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            raise already_exists(path.as_uri()) from None
        stat = aside.stat()  # a rename keeps inode and mtime: the version of what was renamed
        if f"{stat.st_ino}-{stat.st_mtime_ns}" != version:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)  # not the one judged: put it back
            aside.unlink()
            raise already_exists(path.as_uri())
        aside.unlink()

    def get_bytes(self, key: str) -> bytes:
        """Read a whole file."""
        path = self._root / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise errors.NotFoundError(f"{path.as_uri()} does not exist") from None
        except NotADirectoryError:
            raise not_a_folder(path) from None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return (self._root / key).is_file()

    def version(self, key: str) -> str | None:
        """Inode and modification time of the file."""
        try:
            stat = (self._root / key).stat()
        except FileNotFoundError:
            return None
        return f"{stat.st_ino}-{stat.st_mtime_ns}"

    def list_keys(self) -> list[str]:
        """Every file below the directory, as relative keys."""
        if not self._root.is_dir():
            return []
        return sorted(str(p.relative_to(self._root)) for p in self._root.rglob("*") if p.is_file())

    def delete(self, keys: list[str]) -> None:
        """Delete files, then the directories left empty."""
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                (self._root / key).unlink()
        for directory in sorted((p for p in self._root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            self._root.rmdir()
