"""Backup storage: S3-compatible buckets (boto3 multipart) and local/PVC directories.

Objects are written through an :class:`ObjectWriter` that makes them visible at their
final key only on ``commit()`` (S3: complete the multipart upload; directory: rename
a temporary file) and leaves nothing behind on ``abort()``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import errno
import math
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar
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

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write a small object atomically (``exclusive``: never over an existing one)."""

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
        return S3Storage(location, options or S3Options())
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


# --------------------------------------------------------------------------- local directories


def already_exists(uri: str) -> errors.DbopsError:
    """The error for an exclusive write that lost to another writer."""
    return errors.PermanentError(f"{uri} already exists: another run committed it first", reason="AlreadyExists")


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

    def write(self, data: bytes) -> None:
        try:
            self._handle.write(data)
        except OSError as error:
            self.abort()
            raise disk_error(error, self._path) from None
        self._size += len(data)

    def commit(self) -> int:
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
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

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write a file atomically."""
        writer = self.writer(key, exclusive=exclusive)
        writer.write(data)
        writer.commit()

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


# --------------------------------------------------------------------------- S3


def _s3_error(error: Exception, what: str) -> errors.DbopsError:
    from botocore import exceptions as botocore_exceptions

    if isinstance(error, botocore_exceptions.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            bucket = error.response.get("Error", {}).get("BucketName") or ""
            return errors.NotFoundError(f"{what}: bucket {bucket or '(unnamed)'!r} does not exist")
        if code in ("NoSuchKey", "NotFound") or status == 404:
            return errors.NotFoundError(f"{what}: no such object")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden") or status == 403:
            return errors.AuthenticationError(f"{what}: access denied ({code or status})")
        if code == "PreconditionFailed" or status == 412:
            return errors.PermanentError(f"{what}: the object already exists", reason="AlreadyExists")
        if code == "EntityTooSmall":
            return errors.ConfigurationError(f"{what}: the store rejected the part size ({code})")
        return errors.TransientError(f"{what}: {code or status}: {redact(str(error))}")
    if isinstance(error, botocore_exceptions.NoCredentialsError):
        return errors.AuthenticationError(f"{what}: no S3 credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    if isinstance(error, botocore_exceptions.EndpointConnectionError | botocore_exceptions.ConnectionError):
        endpoint = getattr(error, "kwargs", {}).get("endpoint_url") or ""
        return errors.TransientError(f"{what}: cannot reach the S3 endpoint {redact(str(endpoint))}".rstrip())
    if isinstance(error, botocore_exceptions.BotoCoreError):
        return errors.TransientError(f"{what}: {redact(str(error))}")
    raise error


def _call(what: str, function: Callable[..., T], **kwargs: Any) -> T:
    from botocore import exceptions as botocore_exceptions

    try:
        return function(**kwargs)
    except (botocore_exceptions.ClientError, botocore_exceptions.BotoCoreError) as error:
        raise _s3_error(error, what) from None


def call_s3(what: str, function: Callable[..., T], **kwargs: Any) -> T:
    """Call a boto3 client method; S3 errors become DbopsErrors whose message starts with ``what``."""
    return _call(what, function, **kwargs)


class _S3Writer:
    """Multipart upload with one part in flight; small objects go up with a single PUT."""

    def __init__(self, storage: S3Storage, key: str, part_size: int, exclusive: bool) -> None:
        self._storage = storage
        self._conditions = {"IfNoneMatch": "*"} if exclusive else {}
        self._key = storage.full_key(key)
        self._uri = storage.location.uri(key)
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-upload")
        self._pending: concurrent.futures.Future[None] | None = None
        self._size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._submit(part)

    def _submit(self, part: bytes) -> None:
        client = self._storage.client
        if self._upload_id is None:
            response = _call(f"cannot start upload of {self._uri}", client.create_multipart_upload,
                             Bucket=self._storage.location.bucket, Key=self._key)
            self._upload_id = str(response["UploadId"])
        self._wait_pending()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise errors.ConfigurationError(f"{self._uri}: the stream needs more than {MAX_PARTS} parts")
        self._pending = self._executor.submit(self._upload_part, number, part)

    def _upload_part(self, number: int, part: bytes) -> None:
        response = _call(f"cannot upload part {number} of {self._uri}", self._storage.client.upload_part,
                         Bucket=self._storage.location.bucket, Key=self._key, UploadId=self._upload_id,
                         PartNumber=number, Body=part)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def _wait_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def commit(self) -> int:
        client = self._storage.client
        try:
            if self._upload_id is None:
                _call(f"cannot upload {self._uri}", client.put_object, Bucket=self._storage.location.bucket,
                      Key=self._key, Body=bytes(self._buffer), **self._conditions)
            else:
                if self._buffer:
                    self._submit(bytes(self._buffer))
                    self._buffer.clear()
                self._wait_pending()
                _call(f"cannot complete upload of {self._uri}", client.complete_multipart_upload,
                      Bucket=self._storage.location.bucket, Key=self._key, UploadId=self._upload_id,
                      MultipartUpload={"Parts": sorted(self._parts, key=lambda p: int(p["PartNumber"]))},
                      **self._conditions)
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._executor.shutdown(wait=True)
        return self._size

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        with contextlib.suppress(Exception):
            self._wait_pending()
        self._executor.shutdown(wait=True)
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._storage.client.abort_multipart_upload(
                    Bucket=self._storage.location.bucket, Key=self._key, UploadId=self._upload_id
                )


class S3Storage:
    """Objects under ``s3://bucket/prefix`` on AWS S3 or an S3-compatible store."""

    def __init__(self, location: Location, options: S3Options) -> None:
        import boto3
        from botocore.config import Config

        self.location = location
        self.options = options
        config: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"}}
        if options.force_path_style:
            config["s3"] = {"addressing_style": "path"}
        if options.checksum:
            if options.checksum not in ("when_required", "when_supported"):
                raise errors.InvalidSpecError(f"{CHECKSUM_ENV} must be when_required or when_supported")
            config["request_checksum_calculation"] = options.checksum
            config["response_checksum_validation"] = options.checksum
        self.client = boto3.client(
            "s3", endpoint_url=options.endpoint, region_name=options.region, config=Config(**config)
        )

    def full_key(self, key: str) -> str:
        """The bucket key of a relative key."""
        return "/".join(p for p in (self.location.path.strip("/"), key) if p)

    def writer(self, key: str, expected_size: int = 0, *, exclusive: bool = False) -> ObjectWriter:
        """A multipart upload sized for ``expected_size`` bytes (exclusive: ``If-None-Match: *``)."""
        return _S3Writer(self, key, part_size_for(expected_size), exclusive)

    def read(self, key: str) -> Iterator[bytes]:
        """The object's bytes, streamed."""
        from botocore import exceptions as botocore_exceptions

        what = f"cannot read {self.location.uri(key)}"
        response = _call(what, self.client.get_object, Bucket=self.location.bucket, Key=self.full_key(key))
        body = response["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        except (botocore_exceptions.ClientError, botocore_exceptions.BotoCoreError) as error:
            raise _s3_error(error, what) from None
        finally:
            body.close()

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """PUT a small object (exclusive: ``If-None-Match: *``)."""
        conditions = {"IfNoneMatch": "*"} if exclusive else {}
        _call(f"cannot write {self.location.uri(key)}", self.client.put_object,
              Bucket=self.location.bucket, Key=self.full_key(key), Body=data, **conditions)

    def get_bytes(self, key: str) -> bytes:
        """GET a small object."""
        return b"".join(self.read(key))

    def exists(self, key: str) -> bool:
        """HEAD the object."""
        try:
            _call(f"cannot read {self.location.uri(key)}", self.client.head_object,
                  Bucket=self.location.bucket, Key=self.full_key(key))
        except errors.NotFoundError:
            return False
        return True

    def version(self, key: str) -> str | None:
        """The object's ETag."""
        try:
            response = _call(f"cannot read {self.location.uri(key)}", self.client.head_object,
                             Bucket=self.location.bucket, Key=self.full_key(key))
        except errors.NotFoundError:
            return None
        return str(response.get("ETag"))

    def check_bucket(self) -> None:
        """Fail with a clear error when the bucket is missing or not accessible."""
        what = f"S3 bucket {self.location.bucket!r}"
        try:
            _call(what, self.client.head_bucket, Bucket=self.location.bucket)
        except errors.NotFoundError:
            raise errors.NotFoundError(f"{what} does not exist") from None

    def list_keys(self) -> list[str]:
        """Every key under the prefix, relative to it."""
        prefix = self.location.path.strip("/")
        prefix = prefix + "/" if prefix else ""
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = _call(f"cannot list {self.location.uri()}", paginator.paginate,
                      Bucket=self.location.bucket, Prefix=prefix)
        try:
            for page in pages:
                keys += [str(item["Key"])[len(prefix):] for item in page.get("Contents", [])]
        except Exception as error:
            raise _s3_error(error, f"cannot list {self.location.uri()}") from None
        return keys

    def delete(self, keys: list[str]) -> None:
        """Delete objects in batches of 1,000."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.full_key(key)} for key in keys[start:start + 1000]]
            _call(f"cannot delete from {self.location.uri()}", self.client.delete_objects,
                  Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True})
