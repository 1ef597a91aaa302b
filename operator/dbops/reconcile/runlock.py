"""The run lock of a migration as observed: free, ours, held by a live run, or left by a finished one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dbops.api.status import TERMINAL_PHASES

LockState = Literal["Free", "Ours", "Held", "Stale"]


@dataclass(frozen=True)
class RunLock:
    """The Lease of the target database and what its holder is doing."""

    name: str
    state: LockState
    namespace: str = ""
    manifest: Mapping[str, Any] | None = None
    """The Lease this run creates to take the lock."""
    holder: str = ""
    """``DatabaseMigration/<name>`` of the holder."""
    holder_phase: str = ""
    resource_version: str = ""

    @property
    def target(self) -> dict[str, Any]:
        """The delete target of this Lease (guarded by its resourceVersion: never frees a newer holder)."""
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "namespace": self.namespace,
                "name": self.name, "resourceVersion": self.resource_version}


def lock_state(manifest: Mapping[str, Any], lease: Mapping[str, Any] | None, own_uid: str,
               holder_body: Mapping[str, Any] | None) -> RunLock:
    """Classify a Lease: the holder is live while it exists with the same uid, runs the leased revision and has
    not finished; anything else (deleted, recreated, finished, moved on to another revision) is stale.
    There is no expiry: a long migration command holds the lock however long it runs."""
    name, namespace = str(manifest["metadata"]["name"]), str(manifest["metadata"]["namespace"])
    if lease is None:
        return RunLock(name, "Free", namespace, manifest)
    metadata = lease.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    holder_uid = str(annotations.get("dbops.io/holder-uid") or "")
    holder = str(annotations.get("dbops.io/holder-name") or (lease.get("spec") or {}).get("holderIdentity") or "")
    version = str(metadata.get("resourceVersion") or "")
    if holder_uid == own_uid:
        return RunLock(name, "Ours", namespace, manifest, holder, resource_version=version)
    status = (holder_body or {}).get("status") or {}
    phase = str(status.get("phase") or "")
    # An empty sourceHash is a holder whose first status write has not landed yet: still live.
    source_hash = str(status.get("sourceHash") or "")
    live = (holder_body is not None and str((holder_body.get("metadata") or {}).get("uid")) == holder_uid
            and source_hash in ("", str(annotations.get("dbops.io/revision") or ""))
            and phase not in TERMINAL_PHASES)
    return RunLock(name, "Held" if live else "Stale", namespace, manifest, holder, phase, version)


def holder_name(lease: Mapping[str, Any] | None) -> str:
    """The name of the DatabaseMigration holding a Lease ("" when none)."""
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    kind, _, name = str(annotations.get("dbops.io/holder-name") or "").partition("/")
    return name if kind == "DatabaseMigration" else ""
