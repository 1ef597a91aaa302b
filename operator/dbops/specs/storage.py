"""How a Job reaches storage: the location argument, S3 flags, credentials and PVC volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbops.api.common import Storage
from dbops.specs import env as env_specs
from dbops.specs.argv import option

PVC_MOUNT_PATH = "/backups"
PVC_VOLUME = "backups"


@dataclass(frozen=True)
class StorageAccess:
    """Everything a container needs to use one storage."""

    location: str
    """``s3://bucket/prefix`` or a directory under the PVC mount."""
    args: list[str] = field(default_factory=list)
    """S3 flags for the runner."""
    env: list[dict[str, Any]] = field(default_factory=list)
    """Credential env vars (secretKeyRef)."""
    volumes: list[dict[str, Any]] = field(default_factory=list)
    """Pod volumes."""
    mounts: list[dict[str, Any]] = field(default_factory=list)
    """Container volume mounts."""


def storage_access(storage: Storage, *, read_only: bool = False, volume: str = PVC_VOLUME,
                   mount_path: str = PVC_MOUNT_PATH) -> StorageAccess:
    """The access to a storage for a runner container."""
    if storage.s3 is not None:
        s3 = storage.s3
        prefix = s3.prefix.strip("/")
        location = f"s3://{s3.bucket}/{prefix}" if prefix else f"s3://{s3.bucket}"
        return StorageAccess(location=location, args=s3_args(storage), env=env_specs.storage_env(storage))
    if storage.pvc is None:
        raise ValueError("storage needs s3 or pvc")
    path = storage.pvc.path.strip("/")
    location = f"{mount_path}/{path}" if path else mount_path
    return StorageAccess(
        location=location,
        volumes=[{"name": volume, "persistentVolumeClaim": {"claimName": storage.pvc.claim_name,
                                                            "readOnly": read_only}}],
        mounts=[{"name": volume, "mountPath": mount_path, "readOnly": read_only}],
    )


def s3_args(storage: Storage) -> list[str]:
    """The runner's S3 flags for a storage (empty for PVCs)."""
    if storage.s3 is None:
        return []
    args: list[str] = []
    if storage.s3.endpoint:
        args += ["--s3-endpoint", storage.s3.endpoint]
    if storage.s3.region:
        args += option("--s3-region", storage.s3.region)
    if storage.s3.force_path_style:
        args.append("--s3-force-path-style")
    return args


def cleanup_args(storage: Storage) -> list[str]:
    """The runner's stale-upload bound for Jobs that write or delete a backup folder (runner default: 24h)."""
    if storage.s3 is None or storage.s3.abort_incomplete_uploads_after is None:
        return []
    return ["--abort-incomplete-after", storage.s3.abort_incomplete_uploads_after]


def join_location(location: str, *parts: str) -> str:
    """A location with path parts appended."""
    cleaned = [part.strip("/") for part in parts if part.strip("/")]
    return "/".join([location.rstrip("/"), *cleaned])
