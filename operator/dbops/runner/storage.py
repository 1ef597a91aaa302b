"""Backup storage: locations, the Storage and ObjectWriter contract, S3 options and the backend for a location.

Objects are written through an :class:`ObjectWriter` that makes them visible at their
final key only on ``commit()`` (S3: complete the multipart upload; directory: rename
a temporary file) and leaves nothing behind on ``abort()``. ``seal()`` uploads every byte
but keeps the object invisible, so many objects can be uploaded first and committed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlparse

from dbops import errors
from dbops.redaction import redact

MIN_PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
READ_CHUNK = 1024 * 1024
CHECKSUM_ENV = "DBOPS_S3_CHECKSUM"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where backups live: ``s3://bucket/prefix`` or a local directory."""

    scheme: str
    path: str
    bucket: str = ""

    def child(self, *parts: str) -> Location:
        """The location of a sub-folder."""
        joined = "/".join(part.strip("/") for part in parts if part.strip("/"))
        if self.scheme == "s3":
            return dataclasses.replace(self, path="/".join(p for p in (self.path.strip("/"), joined) if p))
        return dataclasses.replace(self, path=str(Path(self.path) / joined))

    def uri(self, key: str = "") -> str:
        """A credential-free URI for this location or a key under it."""
        if self.scheme == "s3":
            path = "/".join(p for p in (self.path.strip("/"), key) if p)
            return f"s3://{self.bucket}/{path}"
        return Path(self.path, key).as_uri() if key else Path(self.path).as_uri()


def parse_location(text: str) -> Location:
    """Parse ``s3://bucket/prefix``, ``file:///path`` or a plain directory path."""
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise errors.InvalidSpecError(f"storage location {text!r} names no bucket")
        return Location(scheme="s3", bucket=parsed.netloc, path=parsed.path.strip("/"))
    if text.startswith("file://"):
        parsed = urlparse(text)
        return Location(scheme="file", path=str(Path(unquote(parsed.path)).resolve()))
    if "://" in text:
        raise errors.InvalidSpecError(f"unsupported storage location {redact(text)!r} (use s3://… or a directory)")
    return Location(scheme="file", path=str(Path(text).expanduser().resolve()))


def backup_location(text: str) -> Location:
    """The folder of one backup, from its folder or its ``manifest.json`` location."""
    location = parse_location(text)
    if location.scheme == "file" and Path(location.path).is_file() and Path(location.path).name != "manifest.json":
        raise errors.InvalidSpecError(
            f"{location.path} is a file, not a backup folder: pass the folder that holds manifest.json "
            f"({Path(location.path).parent})", reason="NotAFolder")
    if location.path.rstrip("/").endswith("manifest.json"):
        if location.scheme == "s3":
            return dataclasses.replace(location, path=location.path.rstrip("/").rsplit("/", 1)[0])
        return dataclasses.replace(location, path=str(Path(location.path).parent))
    return location


class ObjectWriter(Protocol):
    """A streamed object that appears at its key only when committed."""

    def write(self, data: bytes) -> None:
        """Append bytes."""

    def seal(self) -> None:
        """Store every byte written so far, still invisible (S3: an open multipart upload; directory: a hidden
        partial file), and free the upload's thread or file handle; only commit() or abort() may follow."""

    def commit(self) -> int:
        """Make the object visible; returns its size."""

    def abort(self) -> None:
        """Discard everything written (safe to call after a failure or twice)."""


class Storage(Protocol):
    """Objects under one location, addressed by relative keys."""

    location: Location

    def writer(self, key: str, expected_size: int = 0, *, exclusive: bool = False) -> ObjectWriter:
        """A writer for a new object; ``expected_size`` sizes S3 parts.

        With ``exclusive``, committing fails with AlreadyExists when the key exists by then.
        """

    def read(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks."""

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False, if_version: str | None = None) -> str:
        """Write a small object atomically (``exclusive``: never over an existing one; ``if_version``: only
        over the object of that :meth:`version`); a failed condition raises AlreadyExists. Returns the
        :meth:`version` written."""

    def get_bytes(self, key: str) -> bytes:
        """Read a small object."""

    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    def version(self, key: str) -> str | None:
        """An identifier that changes whenever the object is rewritten (None when it does not exist)."""

    def list_keys(self) -> list[str]:
        """All keys under the location."""

    def delete(self, keys: list[str]) -> None:
        """Delete objects (missing ones are ignored)."""

    def delete_if(self, key: str, version: str) -> None:
        """Delete the object only while it is of ``version`` (S3: ``If-Match``, which some stores ignore)."""


@dataclasses.dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store; credentials come from the environment/boto3 chain."""

    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool = False
    checksum: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the S3 flags (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the boto3 chain)."""
    group = parser.add_argument_group("S3", "credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    group.add_argument("--s3-endpoint", metavar="URL", help="endpoint of an S3-compatible store")
    group.add_argument("--s3-region", metavar="REGION")
    group.add_argument("--s3-force-path-style", action="store_true", help="path-style addressing (MinIO)")


def options_from_args(args: argparse.Namespace) -> S3Options:
    """S3 options from the flags of :func:`add_arguments` and ``$DBOPS_S3_CHECKSUM``."""
    return S3Options(
        endpoint=args.s3_endpoint or os.environ.get("DBOPS_S3_ENDPOINT") or None,
        region=args.s3_region,
        force_path_style=bool(args.s3_force_path_style),
        checksum=os.environ.get(CHECKSUM_ENV) or None,
    )


def open_storage(location: Location, options: S3Options | None = None) -> Storage:
    """The storage backend for a location."""
    if location.scheme == "s3":
        from dbops.runner.storage_s3 import S3Storage

        return S3Storage(location, options or S3Options())
    from dbops.runner.storage_local import LocalStorage

    return LocalStorage(location)


def part_size_for(expected_size: int) -> int:
    """A multipart part size that fits a stream of about ``2 × expected_size`` in 10,000 parts."""
    wanted = math.ceil(2 * max(expected_size, 0) / MAX_PARTS)
    size = max(MIN_PART_SIZE, math.ceil(wanted / (1024 * 1024)) * 1024 * 1024)
    if size > MAX_PART_SIZE:
        raise errors.ConfigurationError(
            f"a {expected_size} byte database cannot be uploaded in {MAX_PARTS} parts of at most 5 GiB"
        )
    return size


def already_exists(uri: str) -> errors.DbopsError:
    """The error for an exclusive write that lost to another writer."""
    return errors.PermanentError(f"{uri} already exists: another run committed it first", reason="AlreadyExists")
