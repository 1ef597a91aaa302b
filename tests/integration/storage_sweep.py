"""R3: after a fault, every manifest in the whole bucket (or directory) is checked against its objects.

A manifest is an *orphan* when one of the objects it names is missing or differs in size or sha256 from what
it records: a backup that claims to exist but cannot be restored. Objects no manifest names (what an
interrupted run left, garbage for the next run or retention) are counted separately, as are incomplete S3
multipart uploads and hidden partial files of directory storage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
LEASE = ".dbops-lock"


@dataclasses.dataclass
class Sweep:
    """What a sweep found; ``orphan_manifests`` must be empty after every fault."""

    manifests: int = 0
    objects_checked: int = 0
    orphan_manifests: list[str] = dataclasses.field(default_factory=list)
    """``<manifest key>: <why>`` for each manifest with a missing, truncated or altered object."""
    orphan_objects: list[str] = dataclasses.field(default_factory=list)
    """Keys at final names that no manifest names (an interrupted run's leftovers)."""
    incomplete_uploads: list[str] = dataclasses.field(default_factory=list)
    partial_files: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.manifests} manifests ({self.objects_checked} objects checked), "
                f"{len(self.orphan_manifests)} orphan manifests, {len(self.orphan_objects)} orphan objects, "
                f"{len(self.incomplete_uploads)} incomplete uploads, {len(self.partial_files)} partial files")

    def in_folder(self, folder: str) -> Sweep:
        """The findings under one backup folder (a key prefix without the trailing slash)."""
        def mine(items: list[str]) -> list[str]:
            return [item for item in items if item.startswith(folder.rstrip("/") + "/")]
        return Sweep(self.manifests, self.objects_checked, mine(self.orphan_manifests), mine(self.orphan_objects),
                     mine(self.incomplete_uploads), mine(self.partial_files))


def _check(sweep: Sweep, listing: dict[str, int], read: Any) -> None:
    """Check every manifest of ``listing`` (key → size); ``read(key)`` yields the object's bytes."""
    referenced: set[str] = set()
    for key in sorted(k for k in listing if k == MANIFEST or k.endswith("/" + MANIFEST)):
        sweep.manifests += 1
        folder = key[: -len(MANIFEST)]
        try:
            objects = json.loads(b"".join(read(key)))["objects"]
        except (ValueError, KeyError, TypeError) as error:
            sweep.orphan_manifests.append(f"{key}: not a manifest ({error})")
            continue
        for item in objects:
            name = folder + str(item["name"])
            referenced.add(name)
            sweep.objects_checked += 1
            if name not in listing:
                sweep.orphan_manifests.append(f"{key}: {name} is missing")
                continue
            digest = hashlib.sha256()
            size = 0
            for chunk in read(name):
                digest.update(chunk)
                size += len(chunk)
            if size != int(item["sizeBytes"]):
                sweep.orphan_manifests.append(f"{key}: {name} is {size} bytes, the manifest says {item['sizeBytes']}")
            elif digest.hexdigest() != item["sha256"]:
                sweep.orphan_manifests.append(f"{key}: {name} has another sha256 than the manifest's")
    for key in sorted(listing):
        base = key.rsplit("/", 1)[-1]
        if key in referenced or base in (MANIFEST, LEASE):
            continue
        if base.startswith(".") and ".partial-" in base:
            sweep.partial_files.append(key)
        else:
            sweep.orphan_objects.append(key)


def sweep_s3(client: Any, bucket: str) -> Sweep:
    """List the whole bucket and check every manifest in it."""
    listing: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            listing[str(item["Key"])] = int(item["Size"])

    def read(key: str) -> Any:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(1024 * 1024)
        finally:
            body.close()

    sweep = Sweep()
    _check(sweep, listing, read)
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    sweep.incomplete_uploads = sorted(str(upload["Key"]) for upload in uploads)
    return sweep


def sweep_directory(root: Path) -> Sweep:
    """Walk a directory storage root and check every manifest in it (keys relative to ``root``)."""
    listing = {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()} \
        if root.is_dir() else {}

    def read(key: str) -> Any:
        with open(root / key, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk

    sweep = Sweep()
    _check(sweep, listing, read)
    return sweep


def assert_no_orphan_manifests(sweep: Sweep) -> None:
    """R3: every manifest points at objects whose size and sha256 match."""
    assert not sweep.orphan_manifests, f"orphan manifests: {sweep.orphan_manifests} ({sweep.summary()})"
