"""Backup storage in S3-compatible buckets: boto3 multipart uploads and S3 errors by what they are."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from dbops import errors
from dbops.redaction import redact
from dbops.runner.storage import CHECKSUM_ENV, MAX_PARTS, READ_CHUNK, Location, ObjectWriter, S3Options, part_size_for

T = TypeVar("T")


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
        self._sealed = False

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

    def seal(self) -> None:
        if self._sealed:
            return
        try:
            # Even a small object becomes a one-part multipart upload: it must stay invisible until commit().
            if self._buffer or self._upload_id is None:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            self._wait_pending()
        except BaseException:
            self.abort()
            raise
        self._sealed = True
        self._executor.shutdown(wait=True)

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

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False, if_version: str | None = None) -> str:
        """PUT a small object (exclusive: ``If-None-Match: *``; if_version: ``If-Match: <ETag>``); its ETag."""
        conditions = {"IfNoneMatch": "*"} if exclusive else {}
        if if_version is not None:
            conditions = {"IfMatch": if_version}
        response = _call(f"cannot write {self.location.uri(key)}", self.client.put_object,
                         Bucket=self.location.bucket, Key=self.full_key(key), Body=data, **conditions)
        return str(response.get("ETag"))

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

    def delete_if(self, key: str, version: str) -> None:
        """DeleteObject with ``If-Match: <ETag>`` (AWS S3 refuses a changed object; MinIO ignores the header)."""
        try:
            _call(f"cannot delete {self.location.uri(key)}", self.client.delete_object,
                  Bucket=self.location.bucket, Key=self.full_key(key), IfMatch=version)
        except errors.NotFoundError:
            pass  # gone already
        except errors.DbopsError as error:
            if error.reason != "AlreadyExists":  # 412: it changed, so it is not ours to delete
                raise

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
