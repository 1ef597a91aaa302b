"""Stale incomplete writes under one backup folder: S3 multipart uploads and partial files a killed runner left."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
from collections.abc import Iterable
from pathlib import Path

from dbops import errors
from dbops.api.durations import parse_duration
from dbops.runner import storage, storage_local, storage_s3

DEFAULT_MAX_AGE = "24h"
PARTIAL_MARKER = ".partial-"  # the temporary name of an uncommitted local object: .<name>.partial-<random>


@dataclasses.dataclass(frozen=True)
class IncompleteUpload:
    """An upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime.datetime


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--abort-incomplete-after`` (commands that write or delete a backup folder)."""
    parser.add_argument(
        "--abort-incomplete-after", default=DEFAULT_MAX_AGE, metavar="DURATION",
        help="abort incomplete S3 multipart uploads (and remove partial files) under the backup's own folder "
        f"that are older than this, e.g. 24h or 90m; 0 turns it off (default {DEFAULT_MAX_AGE})",
    )


def max_age_from_args(args: argparse.Namespace) -> float:
    """Seconds of ``--abort-incomplete-after`` (0: off)."""
    text = str(args.abort_incomplete_after).strip()
    if text == "0":
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as error:
        raise errors.InvalidSpecError(f"--abort-incomplete-after: {error}") from None


def folder_prefix(path: str) -> str:
    """The key prefix of a folder: ``a/b/`` (a trailing slash, so ``b1`` never matches ``b10``)."""
    path = path.strip("/")
    return f"{path}/" if path else ""


def select_stale(uploads: Iterable[IncompleteUpload], prefix: str, max_age: float,
                 now: datetime.datetime) -> list[IncompleteUpload]:
    """The uploads under ``prefix`` (a folder prefix ending in ``/``) started more than ``max_age`` s ago."""
    if max_age <= 0:
        return []
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"folder prefix {prefix!r} must end with '/'")
    limit = now - datetime.timedelta(seconds=max_age)
    return [upload for upload in uploads if upload.key.startswith(prefix) and upload.initiated < limit]


def abort_stale(store: storage.Storage, max_age: float, now: datetime.datetime | None = None) -> list[str]:
    """Abort stale incomplete writes under the store's folder; the URIs (or keys) of what was removed."""
    if max_age <= 0:
        return []
    now = now or datetime.datetime.now(datetime.UTC)
    if isinstance(store, storage_s3.S3Storage):
        return _abort_s3(store, max_age, now)
    if isinstance(store, storage_local.LocalStorage):
        return _remove_partial_files(Path(store.location.path), max_age, now)
    return []


def _list_uploads(store: storage_s3.S3Storage, prefix: str) -> list[IncompleteUpload]:
    """Incomplete uploads under ``prefix``.

    AWS filters by any prefix; MinIO matches the prefix against whole object names only (a folder prefix
    lists nothing), so an empty answer is checked against the bucket-wide list, filtered here.
    """
    found = _list_uploads_page_by_page(store, prefix)
    if found:
        return found
    return [upload for upload in _list_uploads_page_by_page(store, "") if upload.key.startswith(prefix)]


def _list_uploads_page_by_page(store: storage_s3.S3Storage, prefix: str) -> list[IncompleteUpload]:
    uploads: list[IncompleteUpload] = []
    markers: dict[str, str] = {}
    what = f"cannot list incomplete uploads under {store.location.uri()}"
    while True:
        page = storage_s3.call_s3(what, store.client.list_multipart_uploads, Bucket=store.location.bucket,
                               Prefix=prefix, **markers)
        for item in page.get("Uploads", []):
            initiated = item["Initiated"]
            if initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=datetime.UTC)
            uploads.append(IncompleteUpload(key=str(item["Key"]), upload_id=str(item["UploadId"]),
                                            initiated=initiated))
        if not page.get("IsTruncated"):
            return uploads
        markers = {"KeyMarker": str(page.get("NextKeyMarker", "")),
                   "UploadIdMarker": str(page.get("NextUploadIdMarker", ""))}


def _abort_s3(store: storage_s3.S3Storage, max_age: float, now: datetime.datetime) -> list[str]:
    prefix = folder_prefix(store.location.path)
    if not prefix:  # a bucket root is never one backup's folder: touch nothing
        return []
    aborted = []
    for upload in select_stale(_list_uploads(store, prefix), prefix, max_age, now):
        uri = f"s3://{store.location.bucket}/{upload.key}"
        try:
            storage_s3.call_s3(f"cannot abort the incomplete upload of {uri}", store.client.abort_multipart_upload,
                            Bucket=store.location.bucket, Key=upload.key, UploadId=upload.upload_id)
        except errors.NotFoundError:  # completed or aborted meanwhile
            continue
        aborted.append(uri)
    return aborted


def _remove_partial_files(root: Path, max_age: float, now: datetime.datetime) -> list[str]:
    if not root.is_dir():
        return []
    limit = (now - datetime.timedelta(seconds=max_age)).timestamp()
    removed = []
    for path in root.rglob(f".*{PARTIAL_MARKER}*"):
        try:
            if path.is_file() and path.stat().st_mtime < limit:
                os.unlink(path)
                removed.append(path.as_uri())
        except FileNotFoundError:
            continue
    return removed
