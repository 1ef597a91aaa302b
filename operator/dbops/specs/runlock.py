"""The run lock of a target database: a coordination.k8s.io Lease named after the database a migration targets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbops.api.common import DatabaseConnection
from dbops.specs import naming
from dbops.specs.owner import MANAGED_BY, MANAGER, Owner

LEASE_PREFIX = "dbops-db-lock"
DATABASE_ANNOTATION = "dbops.io/database"
HOLDER_UID_ANNOTATION = "dbops.io/holder-uid"
HOLDER_NAME_ANNOTATION = "dbops.io/holder-name"
REVISION_ANNOTATION = "dbops.io/revision"

Manifest = dict[str, Any]


def database_key(database: DatabaseConnection) -> str:
    """The target database as the spec names it (a Secret reference or host:port/name, plus overrides).

    Two resources share the lock when they name their database the same way; credentials play no part.
    """
    parts = []
    if database.uri_secret_ref is not None:
        parts.append(f"secret:{database.uri_secret_ref.name}/{database.uri_secret_ref.key}")
    if database.host:
        parts.append(f"host:{database.host.lower()}:{database.port or 5432}")
    if database.name:
        parts.append(f"name:{database.name}")
    return " ".join(parts)


def lease_name(database: DatabaseConnection) -> str:
    """The Lease of a target database in the resource's namespace."""
    return f"{LEASE_PREFIX}-{naming.short_hash(database_key(database))}"


def build_lease(owner: Owner, database: DatabaseConnection, revision: str, now: datetime) -> Manifest:
    """The Lease a run creates to hold the lock (no ownerReference: it is released explicitly, or taken over
    once its holder is gone or finished)."""
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": lease_name(database), "namespace": owner.namespace,
            "labels": {MANAGED_BY: MANAGER, "dbops.io/role": "run-lock"},
            "annotations": {DATABASE_ANNOTATION: database_key(database), HOLDER_UID_ANNOTATION: owner.uid,
                            HOLDER_NAME_ANNOTATION: f"{owner.kind}/{owner.name}", REVISION_ANNOTATION: revision},
        },
        "spec": {"holderIdentity": f"{owner.kind}/{owner.name}",
                 "acquireTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
    }
